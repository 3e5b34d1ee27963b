"""Limits the operator owns: caps a repository may lower but never raise, and the per-installation
daily spend and concurrent-run caps kept in Redis.

The arithmetic (which cap wins, whether a number is over it, the message that says so) is pure; the Redis
adapters below it are small. `RunGuard` is what a run carries into every model call: the per-run cost cap
and the installation's daily spend, checked before each call and charged after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import redis

from bot.agent.loop import AgentLimits
from bot.providers.pricing import cost_usd
from bot.providers.registry import Prices
from bot.providers.types import ModelProvider, ModelRequest, ModelResponse, ModelSlot, ProviderError
from bot.settings import Settings

log = logging.getLogger(__name__)

#: A day's spend key lives a little past its day, so a run that straddles midnight never reads a gap.
SPEND_TTL_S = 2 * 24 * 3600

DAILY_SPEND = (
    "today's spend for this installation is ${spent:.2f} of ${cap:.2f} "
    "(ARCHON_DAILY_USD_PER_INSTALLATION); no model is called until the UTC day ends"
)
RUN_SPEND = "this run has spent ${spent:.2f} of its ${cap:.2f} (ARCHON_MAX_RUN_USD)"
CONCURRENT = (
    "this installation has {active} runs in progress, the limit is {cap} (ARCHON_MAX_CONCURRENT_RUNS); "
    "try again when one has finished"
)
TOO_MANY_JUDGES = "a panel of {count} judges is more than the {cap} allowed here (ARCHON_MAX_JUDGES)"
TOO_MANY_CELLS = (
    "this benchmark has {count} cells ({issues} issue(s) × {pairings} pairing(s) × {repeat}), more than "
    "the {cap} allowed here (ARCHON_MAX_BENCH_CELLS)"
)


# --- the arithmetic ------------------------------------------------------------------------------------


def lowest(*caps: float | None) -> float | None:
    """The tightest of the caps that are set (None: no cap from that layer)."""
    present = [cap for cap in caps if cap is not None]
    return min(present) if present else None


def deployment_limits(settings: Settings) -> AgentLimits:
    """The deployment's ceiling for every agent node."""
    return AgentLimits(
        max_turns=settings.archon_max_turns,
        max_cost_usd=settings.archon_max_node_usd,
        max_wall_s=settings.archon_max_wall_s,
    )


def effective_limits(ceiling: AgentLimits, *layers: Mapping[str, float | int | None]) -> AgentLimits:
    """`ceiling` lowered by each layer in turn (the repository's budgets, then a node's): never raised."""
    limits = ceiling
    for layer in layers:
        limits = limits.lowered({name: value for name, value in layer.items() if value is not None})
    return limits


def spend_refusal(spent: float, cap: float) -> str | None:
    return DAILY_SPEND.format(spent=spent, cap=cap) if spent >= cap else None


def concurrency_refusal(active: int, cap: int) -> str | None:
    """Refuse one more run when `active` already fills the cap."""
    return CONCURRENT.format(active=active, cap=cap) if active >= cap else None


def panel_refusal(count: int, settings: Settings) -> str | None:
    cap = settings.archon_max_judges
    return TOO_MANY_JUDGES.format(count=count, cap=cap) if count > cap else None


def cells_refusal(issues: int, pairings: int, repeat: int, settings: Settings) -> str | None:
    cap, count = settings.archon_max_bench_cells, issues * pairings * repeat
    if count <= cap:
        return None
    return TOO_MANY_CELLS.format(count=count, issues=issues, pairings=pairings, repeat=repeat, cap=cap)


def spend_key(installation_id: int, day: date) -> str:
    return f"archon:spend:{installation_id}:{day.isoformat()}"


def active_key(installation_id: int) -> str:
    """The set of this installation's queued or running runs (and benchmarks, as `bench:<id>`)."""
    return f"archon:active-runs:{installation_id}"


def today() -> date:
    return datetime.now(UTC).date()


# --- Redis adapters --------------------------------------------------------------------------------------


@dataclass
class DailySpend:
    """An installation's spend today (UTC), as an INCRBYFLOAT counter per day."""

    connection: redis.Redis
    installation_id: int
    cap_usd: float

    def spent(self) -> float:
        value = self.connection.get(spend_key(self.installation_id, today()))
        return float(value) if value else 0.0

    def record(self, usd: float) -> None:
        if usd <= 0:
            return
        key = spend_key(self.installation_id, today())
        with self.connection.pipeline() as pipe:
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, SPEND_TTL_S)
            pipe.execute()

    def refusal(self) -> str | None:
        return spend_refusal(self.spent(), self.cap_usd)

    @classmethod
    def of(cls, connection: redis.Redis, installation_id: int, settings: Settings) -> DailySpend:
        return cls(connection, installation_id, settings.archon_daily_usd_per_installation)


def active_runs(connection: redis.Redis, installation_id: int, *, besides: str | None = None) -> int:
    """How many runs of the installation are queued or running (`besides`: one not to count, itself)."""
    members = {
        m.decode() if isinstance(m, bytes) else m for m in connection.smembers(active_key(installation_id))
    }
    members.discard(besides or "")
    return len(members)


def index_active(pipe: redis.client.Pipeline, installation_id: int, member: str, active: bool) -> None:
    """Add or remove `member` in the installation's active set, in the caller's pipeline (so the record and
    the index change together)."""
    key = active_key(installation_id)
    if active:
        pipe.sadd(key, member)
        pipe.expire(key, 7 * 24 * 3600)
    else:
        pipe.srem(key, member)


# --- what a run carries into every model call --------------------------------------------------------------


@dataclass
class RunGuard:
    """The per-run cost cap and the installation's daily cap, for the agent loop and the judges.

    `spent_before`: what the run's nodes cost before this job (earlier attempts, a retry's first part).
    """

    run_cap_usd: float
    spent_before: float = 0.0
    daily: DailySpend | None = None
    spent_here: float = 0.0

    def refusal(self) -> str | None:
        """Why the next model call must not happen, or None."""
        spent = self.spent_before + self.spent_here
        if spent >= self.run_cap_usd:
            return RUN_SPEND.format(spent=spent, cap=self.run_cap_usd)
        return self.daily.refusal() if self.daily else None

    def record(self, usd: float) -> None:
        self.spent_here += usd
        if self.daily is not None:
            self.daily.record(usd)


@dataclass
class GuardedProvider:
    """A provider whose calls are checked against a guard before and charged to it after: for callers that
    talk to a model without the agent loop (the judges)."""

    inner: ModelProvider
    prices: Prices | None
    guard: RunGuard

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    def complete(self, request: ModelRequest) -> ModelResponse:
        if why := self.guard.refusal():
            raise ProviderError("spend_cap", why)
        response = self.inner.complete(request)
        self.guard.record(cost_usd(response.usage, self.prices))
        return response


def guarded(slot: ModelSlot, guard: RunGuard | None) -> ModelSlot:
    if guard is None:
        return slot
    return ModelSlot(GuardedProvider(slot.provider, slot.spec.prices, guard), slot.spec)
