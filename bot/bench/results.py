"""What one benchmark cell produced, and what the benchmark was asked to run. Schemas only.

A cell is one (issue, plan model, implement model, repeat) job; the judge scores its result on a 7-dimension
rubric. A cell that failed — crashed, hung, or could not be judged — is still a `CellResult`, with its reason:
reports list it, they never drop it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.agent.ledger import ProviderStats
from bot.providers.types import Usage

#: The judge's rubric, in report order: dimension id → column title. Each dimension scores 0–10.
DIMENSIONS: dict[str, str] = {
    "root_cause": "Root cause",
    "resolution": "Resolution",
    "scope": "Scope",
    "quality": "Quality",
    "testing": "Testing",
    "correctness": "Correctness",
    "fidelity": "Fidelity",
}
DIMENSION_MAX = 10
OUT_OF = DIMENSION_MAX * len(DIMENSIONS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CellKey(_Frozen):
    """Which cell: the issue, the model alias per role, and which repeat (1-based)."""

    issue: int = Field(ge=1)
    plan: str = Field(description="The plan model's alias, e.g. `opus`.")
    impl: str = Field(description="The implement model's alias, e.g. `kimi`.")
    repeat: int = Field(1, ge=1)

    @property
    def pairing(self) -> tuple[str, str]:
        return self.plan, self.impl


class CellResult(_Frozen):
    """One cell's outcome. Counters are summed over the cell's nodes and providers (see `ledger_fields`)."""

    key: CellKey
    status: Literal["ok", "failed"]
    reason: str | None = Field(None, description="Why the cell failed; required when it did.")
    scores: dict[str, float] | None = Field(None, description="Dimension id → judge score, 0–10.")
    total: float | None = Field(None, description="Judged total; the sum of `scores` when omitted.")
    out_of: int = OUT_OF
    cost_usd: float = Field(0.0, ge=0)
    usage: Usage = Field(default_factory=Usage)
    wall_s: float = Field(0.0, ge=0)
    tool_calls: int = Field(0, ge=0)
    tool_errors: int = Field(0, ge=0)
    retries: int = Field(0, ge=0)
    stalls: int = Field(0, ge=0)
    fallbacks: int = Field(0, ge=0)
    recovered_calls: int = Field(0, ge=0, description="Tool calls the adapter repaired (leaked markup, …).")
    edits_exact: int = Field(0, ge=0)
    edits_fallback: int = Field(0, ge=0, description="Edits applied by a forgiving rule (docs/providers.md).")
    edits_refused: int = Field(0, ge=0)
    validation_passed: bool | None = Field(None, description="The repository's checks; None: not run.")
    branch: str | None = None
    pr_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _total_from_scores(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("total") is None and data.get("scores"):
            return {**data, "total": sum(data["scores"].values())}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CellResult:
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed cell needs a reason")
        if self.status == "ok" and self.total is None:
            raise ValueError("an ok cell needs scores or a total")
        unknown = set(self.scores or ()) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}; the rubric's are {list(DIMENSIONS)}")
        if any(not 0 <= s <= DIMENSION_MAX for s in (self.scores or {}).values()):
            raise ValueError(f"dimension scores must be within 0–{DIMENSION_MAX}")
        if self.total is not None and not 0 <= self.total <= self.out_of:
            raise ValueError(f"total {self.total} is outside 0–{self.out_of}")
        return self


class BenchSpec(_Frozen):
    """What was asked: every issue × plan alias × implement alias × repeat is one cell."""

    repo: str = Field(description="`owner/name`.")
    issues: list[int] = Field(min_length=1)
    plan: list[str] = Field(min_length=1)
    impl: list[str] = Field(min_length=1)
    repeat: int = Field(1, ge=1)
    judge: list[str] = Field(default_factory=list, description="The judge models' aliases.")

    def pairings(self) -> list[tuple[str, str]]:
        """(plan, impl) in matrix order: plan-major."""
        return [(plan, impl) for plan in self.plan for impl in self.impl]

    def cells(self) -> list[CellKey]:
        return [
            CellKey(issue=issue, plan=plan, impl=impl, repeat=repeat)
            for issue in self.issues
            for plan, impl in self.pairings()
            for repeat in range(1, self.repeat + 1)
        ]


def ledger_fields(stats: Iterable[ProviderStats]) -> dict[str, Any]:
    """Sum ledgers' per-provider stats (one per node and provider) into `CellResult` keyword arguments."""
    fields: dict[str, Any] = {"cost_usd": 0.0, "usage": Usage()}
    counters = (
        "tool_calls",
        "tool_errors",
        "retries",
        "stalls",
        "fallbacks",
        "recovered_calls",
        "edits_exact",
        "edits_fallback",
        "edits_refused",
    )
    fields.update(dict.fromkeys(counters, 0))
    for stat in stats:
        fields["cost_usd"] += stat.cost_usd
        fields["usage"] += stat.usage
        for name in counters:
            fields[name] += getattr(stat, name)
    fields["cost_usd"] = round(fields["cost_usd"], 8)
    return fields
