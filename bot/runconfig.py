"""From a parsed request to a fully resolved run configuration, and the run's derived job id.

Pure. Resolution order per role: the trigger, then the repository's `defaults`, then the
deployment's `ARCHON_DEFAULT_MODELS`. The job id hashes the *resolved* configuration, so
`plan-opus` and `plan-opus impl-kimi` (when kimi is the default) are the same run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.providers.registry import ModelRegistry, ModelSpec, unpriced_refusal
from bot.triggers import Role, RunRequest

DEFAULT_WORKFLOW = "fix-issue"


class UnknownModelError(ValueError):
    """An alias that the repository's registry does not know; the message lists valid ones."""


class ResolvedModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    alias: str
    spec: ModelSpec


class RunConfig(BaseModel):
    """Everything that decides what a run does. Equal configs on one issue are one run."""

    model_config = ConfigDict(frozen=True)

    repo: str
    issue: int
    workflow: str
    models: dict[Role, ResolvedModel]
    gate: Literal["plan", "none"] | None = None

    def job_id(self) -> str:
        """RQ job id derived from (repository, issue, configuration)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return "run-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def pairing(self) -> str:
        """`plan-opus impl-kimi`: how people name a configuration."""
        return " ".join(f"{role}-{self.models[role].alias}" for role in (Role.PLAN, Role.IMPL))


def resolve_run(
    request: RunRequest,
    *,
    repo: str,
    issue: int,
    registry: ModelRegistry,
    defaults: Mapping[Role, str],
    gate: Literal["plan", "none"] | None = None,
    allow_unpriced: bool = False,
) -> RunConfig:
    """Resolve every role to a model; the first unknown alias raises with the valid choices, the first
    alias without prices (unless `allow_unpriced`, ARCHON_ALLOW_UNPRICED_MODELS) with the reason."""
    models = {}
    for role in Role:
        alias = request.models.get(role) or defaults.get(role)
        if alias is None:
            raise UnknownModelError(f"No model is configured for `{role}`; add `{role}=<model>`.")
        spec = registry.get(alias)
        if spec is None:
            valid = registry.listed()
            raise UnknownModelError(f"`{role}={alias}`: unknown model alias. Valid aliases: {valid}.")
        if why := unpriced_refusal(alias, spec, allow_unpriced):
            raise UnknownModelError(f"`{role}={alias}`: {why}.")
        models[role] = ResolvedModel(alias=alias.lower(), spec=spec)
    workflow = request.workflow or DEFAULT_WORKFLOW
    return RunConfig(repo=repo, issue=issue, workflow=workflow, models=models, gate=request.gate or gate)
