"""`.github/archon.yml`: a repository's own settings, read from its default branch.

One pydantic schema is the documentation and the validator. A malformed file is reported on the issue
with the field and the reason, and nothing starts on a guess.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.providers.registry import ModelRegistry, ModelSpec, RegistryError, load_registry, parse_models
from bot.settings import PERMISSION_LEVELS, Settings
from bot.triggers import Role

CONFIG_PATH = ".github/archon.yml"


class RepoConfigError(ValueError):
    """The file is not valid; the message names the file, the field and the reason."""


class TriggerPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    permissions: tuple[str, ...] | None = Field(
        None,
        description="Roles that may start work here, among the deployment's (ARCHON_ALLOWED_PERMISSIONS); "
        "the deployment's list when unset. A repository may narrow it, never widen it.",
    )

    @field_validator("permissions")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for item in value or ():
            if item not in PERMISSION_LEVELS:
                raise ValueError(f"unknown permission {item!r}; choose from {PERMISSION_LEVELS}")
        return value


class RunBudgets(BaseModel):
    """Caps for every agent node of a run here. Each only lowers the deployment's (ARCHON_MAX_NODE_USD,
    ARCHON_MAX_TURNS, ARCHON_MAX_WALL_S, ARCHON_BENCH_MAX_USD); a workflow node's `budget` lowers it again."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(None, gt=0, description="Dollars per node.")
    max_turns: int | None = Field(None, gt=0, description="Model calls per node.")
    max_wall_s: float | None = Field(None, gt=0, description="Seconds per node.")
    max_tokens: int | None = Field(None, gt=0, description="Tokens per node.")
    bench_max_usd: float | None = Field(None, gt=0, description="Cap on a benchmark's estimated cost.")


class EvaluationPolicy(BaseModel):
    """How the `Archon evaluation` check run concludes on a pull request."""

    model_config = ConfigDict(extra="forbid")

    min_score: int | None = Field(
        None,
        ge=0,
        le=70,
        description="Score an evaluation needs for its check run to conclude `success` (`failure` below it), "
        "so branch protection can require it; unset: the check run is always `neutral`.",
    )


class RepoConfig(BaseModel):
    """The whole file. Unknown keys are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    models: dict[str, ModelSpec] = Field(
        default_factory=dict, description="Aliases added or overridden for this repository."
    )
    defaults: dict[Role, str] = Field(
        default_factory=dict, description="Model alias per role when a trigger names none."
    )
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy)
    validate_commands: tuple[str, ...] = Field(
        (),
        alias="validate",
        description="Commands that check a change (tests, lint), run in order; detected when empty.",
    )
    setup_commands: tuple[str, ...] = Field(
        (),
        alias="setup",
        description="Install steps run before `validate` (in the checkout's virtualenv for a Python project, "
        "with package-index access only), instead of the detected ones; detected when empty.",
    )
    gate: Literal["plan", "none"] | None = Field(
        None, description="`plan`: every run stops for `/archon approve` after posting its plan."
    )
    budgets: RunBudgets = Field(default_factory=lambda: RunBudgets())
    evaluation: EvaluationPolicy = Field(default_factory=lambda: EvaluationPolicy())
    iterate: Literal["on_changes_requested"] | None = Field(
        None,
        description="`on_changes_requested`: a review requesting changes on the bot's pull request revises "
        "it (as `/archon revise` with the review's text would).",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        try:
            return parse_models(value or {}, CONFIG_PATH)
        except RegistryError as error:
            raise ValueError(str(error)) from error


def parse_repo_config(text: str | None) -> RepoConfig:
    """Parse the file's text (None: no file, so all defaults)."""
    if text is None:
        return RepoConfig()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RepoConfigError(f"`{CONFIG_PATH}` is not valid YAML: {error}") from error
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise RepoConfigError(f"`{CONFIG_PATH}` must be a mapping at the top level.")
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as error:
        raise RepoConfigError(_describe(error)) from error


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"`{CONFIG_PATH}`: `{field}`: {item['msg']}")
    return "\n".join(lines)


PERMISSIONS_WIDENED = (
    "`{path}`: `triggers.permissions`: {extra} may not start work on this deployment "
    "(ARCHON_ALLOWED_PERMISSIONS: {allowed}); a repository may only narrow who can start work"
)


def within_deployment(config: RepoConfig, settings: Settings) -> RepoConfig:
    """The config, if it asks for nothing the deployment forbids; else a `RepoConfigError` naming the field.

    Budgets need no check here: they are combined with the deployment's as the lower of the two."""
    allowed = settings.archon_allowed_permissions
    extra = [role for role in config.triggers.permissions or () if role not in allowed]
    if extra:
        raise RepoConfigError(
            PERMISSIONS_WIDENED.format(
                path=CONFIG_PATH, extra=", ".join(f"`{r}`" for r in extra), allowed=", ".join(allowed)
            )
        )
    return config


def bench_cap_usd(config: RepoConfig, settings: Settings) -> float:
    """A benchmark's estimated-cost cap: the repository's `budgets.bench_max_usd` only lowers the
    deployment's ARCHON_BENCH_MAX_USD."""
    repo_cap = config.budgets.bench_max_usd
    return min(repo_cap, settings.archon_bench_max_usd) if repo_cap else settings.archon_bench_max_usd


def registry_for(config: RepoConfig, settings: Settings) -> ModelRegistry:
    """The aliases usable in a repository: the deployment's, with the repository's own on top."""
    return load_registry(settings.archon_models_file).with_overrides(config.models)


def role_defaults(config: RepoConfig, settings: Settings) -> dict[Role, str]:
    """The alias per role when a trigger names none: the repository's, else the deployment's."""
    deployment = {Role(k): v for k, v in settings.default_models().items()}
    return {**deployment, **config.defaults}
