"""Model aliases: the short names people type (`opus`, `kimi`) mapped to a provider and a model id.

Three layers, later ones winning: the bundled aliases (`models.yml` next to this module: data, each price
with the date it was read and the page it came from), the deployment's `ARCHON_MODELS_FILE`, and a
repository's `.github/archon.yml` (`models:`). All three go through `ModelSpec`. Resolution is pure;
reading the deployment's and the repository's files is the caller's job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from datetime import date
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ALIAS_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")


class Provider(StrEnum):
    """API families and endpoints. Every one but `anthropic` speaks OpenAI chat completions."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    MOONSHOT = "moonshot"
    OPENROUTER = "openrouter"
    SCRIPTED = "scripted"


class Rates(BaseModel):
    """USD per million tokens, as the provider bills them. Thinking/reasoning tokens bill as output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="Uncached input tokens.")
    cache_write: float = Field(ge=0, description="Tokens written to the prompt cache (shortest cache).")
    cache_read: float = Field(ge=0, description="Input tokens read from the prompt cache.")
    output: float = Field(ge=0, description="Output tokens, thinking included.")


class LongPromptRates(Rates):
    """Rates for a whole call whose prompt is longer than `above_tokens` (Haiku 5.5 above 100k, GPT-6.x
    above 272k): the provider bills every token of that call, output included, at these rates."""

    above_tokens: int = Field(
        gt=0, description="Prompt tokens (input + cache read + cache write) past which."
    )


class Prices(Rates):
    """What a model costs, and when and where that was read, so a stale figure can be seen as stale."""

    as_of: str = Field("", pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="Date the prices were read.")
    source: str = Field("", description="The page they were read from.")
    long_prompt: LongPromptRates | None = Field(None, description="Rates for calls with a long prompt.")

    @field_validator("as_of", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        """YAML reads an unquoted 2026-12-02 as a date; keep it as the text people wrote."""
        return value.isoformat() if isinstance(value, date) else value


class ModelSpec(BaseModel):
    """What an alias stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider = Field(description="Which API answers for this model.")
    model: str = Field(min_length=1, description="The provider's model id.")
    description: str = Field("", description="One line shown by `/archon models`.")
    context_window: int = Field(200_000, gt=0, description="Tokens the model accepts, prompt and output.")
    max_output_tokens: int = Field(16_000, gt=0, description="Default output cap per call.")
    prices: Prices | None = Field(None, description="Per-million-token prices; None: cost unknown (0).")
    thinking: Literal["budget", "adaptive"] = Field(
        "budget",
        description="How the model takes extended thinking (Anthropic): `budget` (`enabled` with "
        "`budget_tokens`, Claude 4.5 and older) or `adaptive` only (Claude 4.7 and the 5 family answer "
        "a budget with a 400).",
    )


BUNDLED_MODELS = "models.yml"


class _BundledModels(Mapping[str, ModelSpec]):
    """The bundled aliases (`bot/providers/models.yml`), read on first use rather than at import."""

    def __getitem__(self, alias: str) -> ModelSpec:
        return bundled_models()[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(bundled_models())

    def __len__(self) -> int:
        return len(bundled_models())


DEFAULT_MODELS: Mapping[str, ModelSpec] = _BundledModels()


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


@functools.cache
def bundled_models() -> Mapping[str, ModelSpec]:
    """The aliases shipped with the bot, validated by the same schema as any models file; read-only,
    since every caller shares the one cached table."""
    text = resources.files(__package__).joinpath(BUNDLED_MODELS).read_text()
    return MappingProxyType(parse_models_text(text, f"bot/providers/{BUNDLED_MODELS}"))


def parse_models_text(text: str, source: str) -> dict[str, ModelSpec]:
    """A models file's YAML: `models: {alias: {...}}`, or the bare alias mapping."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RegistryError(f"{source}: not valid YAML: {error}") from error
    section = data.get("models", data) if isinstance(data, Mapping) else data
    return parse_models(section, source)


def load_registry(models_file: Path | None) -> ModelRegistry:
    """The deployment's registry: the bundled aliases, then `ARCHON_MODELS_FILE` on top of them — its
    aliases are added, and one that shares a bundled alias's name replaces that alias whole."""
    registry = ModelRegistry.default()
    if models_file is None:
        return registry
    return registry.with_overrides(parse_models_text(models_file.read_text(), str(models_file)))
