"""Statistics over benchmark cells: one `PairingSummary` per (plan, impl) overall and per issue, and the
headline sentence the report opens with. Pure.

Rules, so that readers of a report can check it:

* **Failed cells** are counted and listed with their reasons, never scored as zero: score, cost, token and
  time means are over the pairing's *ok* cells. `total_cost_usd` and the reliability sums (tool errors,
  retries, stalls, fallbacks) cover *every* cell, since a hung cell's spend and stalls are real. A cell the
  spec asked for that reported nothing counts as failed (`MISSING_REASON`).
* **Spread** is the sample standard deviation (n − 1), 0 for a single cell. Overall rows pool issues, so their
  spread includes how much the issues differ, not only run-to-run noise.
* **Reference**: of the pairings that use one model for both roles and finished a cell, the most expensive
  by mean cost per cell (ties: the first in matrix order). If none finished, the highest-scoring pairing.
* **Best value**: of the pairings whose mean total reaches `QUALITY_THRESHOLD` (90 %) of the reference's,
  the highest mean total per dollar (a free, scripted pairing counts as infinitely cheap; ties: the higher
  score, then matrix order). The reference itself is a candidate.
* **Noise**: two pairings' mean totals differ within the noise when |Δmean| ≤ `NOISE_SE` (2) × the combined
  standard error √(sd₁²/n₁ + sd₂²/n₂). With fewer than two ok cells on either side it cannot be told.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from bot.bench.results import DIMENSIONS, OUT_OF, BenchSpec, CellKey, CellResult
from bot.providers.types import Usage

QUALITY_THRESHOLD = 0.9
NOISE_SE = 2.0
MISSING_REASON = "no result: the cell's job never reported one"
COUNTERS = ("tool_calls", "tool_errors", "retries", "stalls", "fallbacks")
#: Issue 14's counters: calls the adapter recovered, and how edits matched (bot/agent/edits.py).
EDIT_COUNTERS = ("recovered_calls", "edits_exact", "edits_fallback", "edits_refused")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stat(_Frozen):
    mean: float
    sd: float
    n: int

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)


def stat(values: Sequence[float]) -> Stat | None:
    """Mean and sample standard deviation (n − 1; 0 for one value); None for no values."""
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(mean=statistics.fmean(values), sd=sd, n=len(values))


def within_noise(a: Stat, b: Stat) -> bool | None:
    """|Δmean| ≤ 2 combined standard errors; None when either side has fewer than two values."""
    if a.n < 2 or b.n < 2:
        return None
    return abs(a.mean - b.mean) <= NOISE_SE * math.hypot(a.se, b.se)


class FailedCell(_Frozen):
    key: CellKey
    reason: str


class PairingSummary(_Frozen):
    plan: str
    impl: str
    code: str
    issue: int | None = None
    n: int
    n_ok: int
    n_failed: int
    failures: list[FailedCell]
    total: Stat | None
    dimensions: dict[str, Stat]
    cost_usd: Stat | None
    total_cost_usd: float
    tokens: dict[str, float]
    wall_s: Stat | None
    tool_calls: int
    tool_errors: int
    retries: int
    stalls: int
    fallbacks: int
    recovered_calls: int = 0
    edits_exact: int = 0
    edits_fallback: int = 0
    edits_refused: int = 0
    validated: int
    validation_passed: int

    @property
    def edits(self) -> int:
        return self.edits_exact + self.edits_fallback + self.edits_refused

    @property
    def validation_rate(self) -> float | None:
        return self.validation_passed / self.validated if self.validated else None


class IssueSummary(_Frozen):
    issue: int
    pairings: list[PairingSummary]


class BenchSummary(_Frozen):
    spec: BenchSpec
    out_of: int = OUT_OF
    pairings: list[PairingSummary]
    issues: list[IssueSummary]

    @property
    def n_cells(self) -> int:
        return sum(p.n for p in self.pairings)

    @property
    def failures(self) -> list[FailedCell]:
        return [f for p in self.pairings for f in p.failures]


def pairing_codes(pairings: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """`OK` for plan opus × impl kimi when every alias has its own initial, else `opus/kimi`."""
    aliases = {alias for pairing in pairings for alias in pairing}
    initials = {alias: alias[0].upper() for alias in aliases}
    if len(set(initials.values())) == len(aliases):
        return {(p, i): initials[p] + initials[i] for p, i in pairings}
    return {(p, i): f"{p}/{i}" for p, i in pairings}


def describe(plan: str, impl: str) -> str:
    return f"plan and implement with {plan}" if plan == impl else f"plan with {plan}, implement with {impl}"


def summarize(results: Iterable[CellResult], spec: BenchSpec) -> BenchSummary:
    cells = _complete(results, spec)
    pairings = list(dict.fromkeys([*spec.pairings(), *(c.key.pairing for c in cells)]))
    issues = list(dict.fromkeys([*spec.issues, *(c.key.issue for c in cells)]))
    codes = pairing_codes(pairings)
    per_issue = [IssueSummary(issue=i, pairings=_rows(cells, pairings, codes, i)) for i in issues]
    return BenchSummary(spec=spec, pairings=_rows(cells, pairings, codes, None), issues=per_issue)


def _rows(
    cells: list[CellResult],
    pairings: list[tuple[str, str]],
    codes: dict[tuple[str, str], str],
    issue: int | None,
) -> list[PairingSummary]:
    """One summary per pairing, over all issues (`issue` None) or one."""
    return [
        _summarize_pairing(
            pairing,
            codes[pairing],
            issue,
            [c for c in cells if c.key.pairing == pairing and issue in (None, c.key.issue)],
        )
        for pairing in pairings
    ]


def _complete(results: Iterable[CellResult], spec: BenchSpec) -> list[CellResult]:
    """The results, plus a failed cell for each one the spec expects that never reported."""
    by_key: dict[CellKey, CellResult] = {}
    for result in results:
        if result.key in by_key:
            raise ValueError(f"two results for cell {result.key}")
        by_key[result.key] = result
    for key in spec.cells():
        by_key.setdefault(key, CellResult(key=key, status="failed", reason=MISSING_REASON))
    return sorted(by_key.values(), key=lambda c: (c.key.issue, c.key.plan, c.key.impl, c.key.repeat))


def _summarize_pairing(
    pairing: tuple[str, str], code: str, issue: int | None, cells: list[CellResult]
) -> PairingSummary:
    ok = [c for c in cells if c.status == "ok"]
    failed = [FailedCell(key=c.key, reason=c.reason or "") for c in cells if c.status == "failed"]
    validated = [c.validation_passed for c in ok if c.validation_passed is not None]
    dimensions = {
        name: stat([c.scores[name] for c in ok if c.scores and name in c.scores]) for name in DIMENSIONS
    }
    return PairingSummary(
        plan=pairing[0],
        impl=pairing[1],
        code=code,
        issue=issue,
        n=len(cells),
        n_ok=len(ok),
        n_failed=len(failed),
        failures=failed,
        total=stat([c.total for c in ok if c.total is not None]),
        dimensions={name: s for name, s in dimensions.items() if s is not None},
        cost_usd=stat([c.cost_usd for c in ok]),
        total_cost_usd=round(sum(c.cost_usd for c in cells), 8),
        tokens={
            kind: statistics.fmean(getattr(c.usage, kind) for c in ok) if ok else 0.0
            for kind in Usage.model_fields
        },
        wall_s=stat([c.wall_s for c in ok]),
        **{name: sum(getattr(c, name) for c in cells) for name in COUNTERS},
        **{name: sum(getattr(c, name) for c in cells) for name in EDIT_COUNTERS},
        validated=len(validated),
        validation_passed=sum(validated),
    )


# --- the headline ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The reference pairing, the best-value one, and whether their scores differ within the noise."""

    reference: PairingSummary
    best: PairingSummary
    within_noise: bool | None


def verdict(summary: BenchSummary) -> Verdict | None:
    """None when no pairing finished a cell."""
    finished = [p for p in summary.pairings if p.total is not None and p.cost_usd is not None]
    if not finished:
        return None
    same = [p for p in finished if p.plan == p.impl]
    reference = max(same, key=_mean_cost) if same else max(finished, key=_mean_total)
    floor = QUALITY_THRESHOLD * _mean_total(reference)
    candidates = [p for p in finished if _mean_total(p) >= floor]
    best = max(candidates, key=lambda p: (_per_dollar(p), _mean_total(p)))
    noise = None if best is reference else within_noise(_total(best), _total(reference))
    return Verdict(reference=reference, best=best, within_noise=noise)


def headline(summary: BenchSummary) -> str:
    """One sentence computed from the data, e.g. `Plan with opus, implement with kimi (OK): 97% of OO's
    score at 31% of its cost; the score difference (-1.3) is within the noise of 3 repeats.`"""
    found = verdict(summary)
    if found is None:
        return f"No cell finished: all {summary.n_cells} cells failed (reasons below)."
    clauses = [_comparison(found, summary)]
    if found.within_noise:
        delta = _mean_total(found.best) - _mean_total(found.reference)
        clauses.append(f"the score difference ({delta:+.1f}) is within the noise of {_sample(summary.spec)}")
    elif found.best is not found.reference and found.within_noise is None:
        clauses.append("too few finished cells to estimate the noise")
    dead = [p.code for p in summary.pairings if p.n_ok == 0]
    if dead:
        clauses.append(f"{', '.join(dead)} failed every cell")
    elif failures := summary.failures:
        clauses.append(f"{len(failures)} of {summary.n_cells} cells failed")
    sentence = "; ".join(clauses) + "."
    return sentence[0].upper() + sentence[1:]


def _comparison(found: Verdict, summary: BenchSummary) -> str:
    best, reference = found.best, found.reference
    name = f"{describe(best.plan, best.impl)} ({best.code})"
    if sum(p.n_ok > 0 for p in summary.pairings) == 1:
        alone = f"{_mean_total(best):.1f}/{summary.out_of} at {_usd(_mean_cost(best))} per cell"
        return f"{name}: {alone}" if len(summary.pairings) == 1 else f"only {name} finished: {alone}"
    if best is reference:
        return (
            f"{name} is the best value: no other pairing gives more score per dollar while keeping "
            f"{QUALITY_THRESHOLD:.0%} of its {_mean_total(reference):.1f}/{summary.out_of}"
        )
    return f"{name}: {_score_share(best, reference, summary.out_of)} {_cost_share(best, reference)}"


def _score_share(best: PairingSummary, reference: PairingSummary, out_of: int) -> str:
    if _mean_total(reference) > 0:
        return f"{_mean_total(best) / _mean_total(reference):.0%} of {reference.code}'s score"
    return f"{_mean_total(best):.1f}/{out_of} against {reference.code}'s 0/{out_of}"


def _cost_share(best: PairingSummary, reference: PairingSummary) -> str:
    if _mean_cost(reference) > 0:
        return f"at {_mean_cost(best) / _mean_cost(reference):.0%} of its cost"
    if _mean_cost(best) == 0:
        return "with both at no cost"
    return f"at {_usd(_mean_cost(best))} per cell where {reference.code} cost nothing"


def _sample(spec: BenchSpec) -> str:
    parts = [f"{spec.repeat} repeats"] if spec.repeat > 1 else []
    if len(spec.issues) > 1:
        parts.append(f"{len(spec.issues)} issues")
    return " over ".join(parts) or "one cell"


def _usd(amount: float) -> str:
    """Dollars without a `$`: two `$` on a line turn GitHub markdown into math."""
    return f"{amount:.2f} USD"


def _total(p: PairingSummary) -> Stat:
    assert p.total is not None
    return p.total


def _mean_total(p: PairingSummary) -> float:
    return _total(p).mean


def _mean_cost(p: PairingSummary) -> float:
    assert p.cost_usd is not None
    return p.cost_usd.mean


def _per_dollar(p: PairingSummary) -> float:
    return math.inf if _mean_cost(p) == 0 else _mean_total(p) / _mean_cost(p)
