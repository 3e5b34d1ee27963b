"""Build providers from registry entries and the deployment's settings (keys and base URLs).

The only place that reads provider keys. A missing key is a `ConfigurationError` naming the variable,
raised before any work starts, so a run never half-happens for want of a key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from bot.providers.registry import ModelRegistry, ModelSpec, Provider, unpriced_refusal
from bot.providers.scripted import ScriptedProvider
from bot.providers.types import CallLimits, ModelProvider, ModelSlot
from bot.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)

#: Scripts shipped with the bot (the demo's), found by name: `{provider: scripted, model: demo-plan}`.
BUNDLED_SCRIPTS = "bot.providers.scripts"


def build_provider(
    spec: ModelSpec,
    settings: Settings,
    limits: CallLimits | None = None,
    node: str | None = None,
    variant: str | None = None,
) -> ModelProvider:
    """`node`, `variant`: for scripted models, the most specific script wins —
    `<model>-<node>-<variant>`, then `<model>-<node>`, then `<model>` — so one scripted model can play
    several workflow nodes, and differ per pairing in a scripted benchmark."""
    limits = limits or CallLimits()
    if spec.provider is Provider.SCRIPTED:
        script = _node_script(spec.model, node, variant, settings.archon_scripts_dir)
        return ScriptedProvider.from_file(script)
    if spec.provider is Provider.ANTHROPIC:
        key = _key(settings.anthropic_api_key, "ANTHROPIC_API_KEY", spec)
        from bot.providers.anthropic import AnthropicProvider

        return AnthropicProvider(spec, api_key=key, base_url=settings.anthropic_base_url, limits=limits)
    variable, secret, base_url = _openai_family(spec.provider, settings)
    key = _key(secret, variable, spec)
    from bot.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(spec, api_key=key, base_url=base_url, limits=limits)


def _openai_family(provider: Provider, settings: Settings) -> tuple[str, object, str | None]:
    if provider is Provider.MOONSHOT:
        return "MOONSHOT_API_KEY", settings.moonshot_api_key, settings.moonshot_base_url
    if provider is Provider.OPENROUTER:
        return "OPENROUTER_API_KEY", settings.openrouter_api_key, settings.openrouter_base_url
    return "OPENAI_API_KEY", settings.openai_api_key, settings.openai_base_url


def _key(secret: object, variable: str, spec: ModelSpec) -> str:
    value = secret.get_secret_value() if secret is not None else ""  # type: ignore[attr-defined]
    if not value:
        raise ConfigurationError(f"{variable} must be set to use {spec.provider} model `{spec.model}`")
    return value


def _node_script(model: str, node: str | None, variant: str | None, scripts_dir: Path | None) -> Path:
    names = [f"{model}-{node}-{variant}"] if node and variant else []
    names += [f"{model}-{node}"] if node else []
    for name in names:
        try:
            return find_script(name, scripts_dir)
        except ConfigurationError:
            pass
    return find_script(model, scripts_dir)


def find_script(name: str, scripts_dir: Path | None) -> Path:
    """A script by path, by name in ARCHON_SCRIPTS_DIR, or by name among the bundled ones."""
    candidates = [Path(name)]
    if scripts_dir is not None:
        candidates += [scripts_dir / name, scripts_dir / f"{name}.jsonl"]
    bundled = resources.files(BUNDLED_SCRIPTS)
    candidates += [Path(str(bundled / name)), Path(str(bundled / f"{name}.jsonl"))]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigurationError(
        f"no script `{name}` for the scripted provider (looked in {scripts_dir or '-'} "
        "and the bundled scripts)"
    )


def build_chain(
    alias: str,
    registry: ModelRegistry,
    settings: Settings,
    limits: CallLimits | None = None,
    node: str | None = None,
    variant: str | None = None,
) -> list[ModelSlot]:
    """The alias's model followed by its fallbacks (`ARCHON_FALLBACKS`), each built once. An alias without
    prices is refused unless ARCHON_ALLOW_UNPRICED_MODELS: the primary with an error, a fallback skipped."""
    aliases = _unique([alias, *settings.fallbacks().get(alias, [])])
    slots = []
    for position, name in enumerate(aliases):
        spec = registry.get(name)
        if spec is None:
            raise ConfigurationError(f"ARCHON_FALLBACKS names `{name}`, which is not a model alias here")
        try:
            if why := unpriced_refusal(name, spec, settings.archon_allow_unpriced_models):
                raise ConfigurationError(why)
            slots.append(ModelSlot(build_provider(spec, settings, limits, node, variant), spec))
        except ConfigurationError as error:
            if position == 0:
                raise
            # A fallback that cannot be built (no key here) must not stop the primary from working.
            log.warning("fallback `%s` for `%s` is unavailable: %s", name, alias, error)
    return slots


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
