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


class ModelSpec(BaseModel):
    """What an alias stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider = Field(description="Which API answers for this model.")
    model: str = Field(min_length=1, description="The provider's model id.")
    description: str = Field("", description="One line shown by `/archon models`.")


DEFAULT_MODELS: Mapping[str, ModelSpec] = {
    "opus": ModelSpec(provider=Provider.ANTHROPIC, model="claude-opus-4-5", description="strongest planner"),
    "sonnet": ModelSpec(provider=Provider.ANTHROPIC, model="claude-sonnet-4-5", description="balanced"),
    "haiku": ModelSpec(provider=Provider.ANTHROPIC, model="claude-haiku-4-5", description="fast explorer"),
    "kimi": ModelSpec(provider=Provider.MOONSHOT, model="kimi-k2.6", description="low-cost implementer"),
    "gpt": ModelSpec(provider=Provider.OPENAI, model="gpt-5", description="OpenAI flagship"),
}


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
