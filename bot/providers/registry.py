"""Model aliases: the short names people type (`opus`, `kimi`) mapped to a provider and a model id.

Three layers, later ones winning: the bundled defaults, the deployment's `ARCHON_MODELS_FILE`, and a
repository's `.github/archon.yml` (`models:`). Resolution is pure; loading files is the caller's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALIAS_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")


class Provider(StrEnum):
    """API families and endpoints. Every one but `anthropic` speaks OpenAI chat completions."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    MOONSHOT = "moonshot"
    OPENROUTER = "openrouter"
    SCRIPTED = "scripted"


class Prices(BaseModel):
    """USD per million tokens, as the provider bills them. Thinking/reasoning tokens bill as output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="Uncached input tokens.")
    cache_write: float = Field(ge=0, description="Tokens written to the prompt cache (5-minute cache).")
    cache_read: float = Field(ge=0, description="Input tokens read from the prompt cache.")
    output: float = Field(ge=0, description="Output tokens, thinking included.")
    as_of: str = Field("", description="Date the prices were checked (YYYY-MM-DD).")
    source: str = Field("", description="Where they were read.")


class ModelSpec(BaseModel):
    """What an alias stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider = Field(description="Which API answers for this model.")
    model: str = Field(min_length=1, description="The provider's model id.")
    description: str = Field("", description="One line shown by `/archon models`.")
    context_window: int = Field(200_000, gt=0, description="Tokens the model accepts, prompt and output.")
    max_output_tokens: int = Field(16_000, gt=0, description="Default output cap per call.")
    prices: Prices | None = Field(None, description="Per-million-token prices; None: cost unknown (0).")


_ANTHROPIC_PRICES = "https://platform.claude.com/docs/en/about-claude/pricing"
_MOONSHOT_PRICES = "https://platform.moonshot.ai/docs/pricing/chat (K2.6: $0.16 hit / $0.95 miss / $4.00 out)"
_OPENAI_PRICES = "https://openai.com/api/pricing"

DEFAULT_MODELS: Mapping[str, ModelSpec] = {
    "opus": ModelSpec(
        provider=Provider.ANTHROPIC,
        model="claude-opus-5",
        description="strongest planner",
        context_window=200_000,
        max_output_tokens=32_000,
        prices=Prices(
            input=5, cache_write=6.25, cache_read=0.5, output=25, as_of="2026-11-27", source=_ANTHROPIC_PRICES
        ),
    ),
    "sonnet": ModelSpec(
        provider=Provider.ANTHROPIC,
        model="claude-sonnet-5",
        description="balanced",
        context_window=200_000,
        max_output_tokens=32_000,
        prices=Prices(
            input=2, cache_write=2.5, cache_read=0.2, output=10, as_of="2026-11-27", source=_ANTHROPIC_PRICES
        ),
    ),
    "haiku": ModelSpec(
        provider=Provider.ANTHROPIC,
        model="claude-haiku-4-5",
        description="fast explorer",
        context_window=200_000,
        max_output_tokens=16_000,
        prices=Prices(
            input=1, cache_write=1.25, cache_read=0.1, output=5, as_of="2026-11-27", source=_ANTHROPIC_PRICES
        ),
    ),
    "kimi": ModelSpec(
        provider=Provider.MOONSHOT,
        model="kimi-k2.6",
        description="low-cost implementer",
        context_window=262_144,
        max_output_tokens=32_000,
        # Moonshot caches prefixes automatically and bills no cache-write surcharge.
        prices=Prices(
            input=0.95,
            cache_write=0.95,
            cache_read=0.16,
            output=4,
            as_of="2026-11-27",
            source=_MOONSHOT_PRICES,
        ),
    ),
    "gpt": ModelSpec(
        provider=Provider.OPENAI,
        model="gpt-5",
        description="OpenAI flagship",
        context_window=400_000,
        max_output_tokens=32_000,
        prices=Prices(
            input=1.25,
            cache_write=1.25,
            cache_read=0.125,
            output=10,
            as_of="2026-11-27",
            source=_OPENAI_PRICES,
        ),
    ),
}


UNPRICED = (
    "`{alias}` has no `prices`, so its calls would count as $0 against every cost cap; give it `prices` "
    "(USD per million tokens), or set ARCHON_ALLOW_UNPRICED_MODELS=true to allow unpriced models"
)


def unpriced_refusal(alias: str, spec: ModelSpec, allow: bool) -> str | None:
    """Why `alias` may not be used: it has no prices and the deployment does not allow that. Scripted
    models are exempt: they answer from a file and never bill anyone."""
    if spec.prices is not None or allow or spec.provider is Provider.SCRIPTED:
        return None
    return UNPRICED.format(alias=alias)


class RegistryError(ValueError):
    """A models file is malformed; the message names the file and the field."""


class ModelRegistry:
    """An immutable alias table; `with_overrides` returns a new one (a repository's view)."""

    def __init__(self, models: Mapping[str, ModelSpec]) -> None:
        self._models = dict(models)

    @classmethod
    def default(cls) -> ModelRegistry:
        return cls(DEFAULT_MODELS)

    def with_overrides(self, overrides: Mapping[str, ModelSpec]) -> ModelRegistry:
        return ModelRegistry({**self._models, **overrides})

    def aliases(self) -> list[str]:
        return sorted(self._models)

    def listed(self) -> str:
        """The aliases as people read them in a reply: "`gpt`, `haiku`, `kimi`"."""
        return ", ".join(f"`{alias}`" for alias in self.aliases())

    def get(self, alias: str) -> ModelSpec | None:
        return self._models.get(alias.lower())

    def items(self) -> list[tuple[str, ModelSpec]]:
        return sorted(self._models.items())


def parse_models(data: object, source: str) -> dict[str, ModelSpec]:
    """Validate an `{alias: {provider, model}}` mapping, naming `source` in every error."""
    if not isinstance(data, Mapping):
        raise RegistryError(f"{source}: expected a mapping of alias to {{provider, model}}")
    models: dict[str, ModelSpec] = {}
    for alias, spec in data.items():
        if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
            raise RegistryError(f"{source}: alias {alias!r} must match {ALIAS_PATTERN.pattern}")
        try:
            models[alias] = ModelSpec.model_validate(spec)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RegistryError(f"{source}: models.{alias}.{where}: {first['msg']}") from error
    return models


def load_registry(models_file: Path | None) -> ModelRegistry:
    """The deployment's registry: bundled defaults plus `ARCHON_MODELS_FILE`, if set."""
    registry = ModelRegistry.default()
    if models_file is None:
        return registry
    data = yaml.safe_load(models_file.read_text()) or {}
    section = data.get("models", data) if isinstance(data, Mapping) else data
    return registry.with_overrides(parse_models(section, str(models_file)))
