"""The ledger: what every model call of a run used, cost and went through, and the per-provider
reliability counters the benchmark reports (tool-call failures, retries, stalls, fallbacks, calls the
adapter recovered, and how each edit matched: exactly, by a fallback rule, or refused).

`providers` is keyed by provider (what metrics and the run record aggregate on); `models` keeps the same
counters per `provider/model`, for a chain that sends two models to one provider."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from bot.agent.edits import EXACT, REFUSED
from bot.providers.pricing import cost_usd
from bot.providers.registry import Prices
from bot.providers.types import ModelResponse, ProviderError, Usage


class CallRecord(BaseModel):
    """One model call (a failed one too: its retries and the error count against its provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    turn: int
    provider: str = Field(description="Which provider actually answered (or failed).")
    model: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    retries: int = 0
    stalls: int = 0
    error: str | None = Field(None, description="ProviderError kind, when the call failed.")
    fallback_from: str | None = Field(None, description="The provider this call replaced, if a fallback.")


class ProviderStats(BaseModel):
    calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    stalls: int = 0
    fallbacks: int = Field(0, description="Times this provider was abandoned for the next in the chain.")
    tool_calls: int = 0
    tool_errors: int = Field(0, description="Refused tool calls: the result went back as an error.")
    recovered_calls: int = Field(0, description="Repairs the adapter made (`ModelResponse.recoveries`).")
    edits_exact: int = 0
    edits_fallback: int = Field(0, description="Edits applied by a forgiving rule (bot/agent/edits.py).")
    edits_refused: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0

    def __add__(self, other: ProviderStats) -> ProviderStats:
        """Counters summed (a node's attempts, a pairing's cells)."""
        summed = {name: getattr(self, name) + getattr(other, name) for name in ProviderStats.model_fields}
        return ProviderStats(**{**summed, "cost_usd": round(summed["cost_usd"], 8)})

    @property
    def edits(self) -> int:
        return self.edits_exact + self.edits_fallback + self.edits_refused


class Ledger(BaseModel):
    calls: list[CallRecord] = Field(default_factory=list)
    providers: dict[str, ProviderStats] = Field(default_factory=dict)
    models: dict[str, ProviderStats] = Field(default_factory=dict, description="Keyed `provider/model`.")

    def _stats(self, provider: str, model: str | None = None) -> list[ProviderStats]:
        """The provider's counters, and the model's when it is known: both are updated alike."""
        keyed = [(self.providers, provider)] + ([(self.models, f"{provider}/{model}")] if model else [])
        return [table.setdefault(key, ProviderStats()) for table, key in keyed]

    def record(
        self, turn: int, response: ModelResponse, prices: Prices | None, fallback_from: str | None = None
    ) -> CallRecord:
        record = CallRecord(
            turn=turn,
            provider=response.provider,
            model=response.model,
            usage=response.usage,
            cost_usd=cost_usd(response.usage, prices),
            latency_s=response.latency_s,
            retries=response.retries,
            stalls=response.stalls,
            fallback_from=fallback_from,
        )
        self.calls.append(record)
        for stats in self._stats(response.provider, response.model):
            stats.calls += 1
            stats.retries += response.retries
            stats.stalls += response.stalls
            stats.recovered_calls += len(response.recoveries)
            stats.usage = stats.usage + response.usage
            stats.cost_usd = round(stats.cost_usd + record.cost_usd, 8)
        return record

    def record_failure(
        self, turn: int, provider: str, model: str, error: ProviderError, latency_s: float
    ) -> None:
        self.calls.append(
            CallRecord(
                turn=turn,
                provider=provider,
                model=model,
                latency_s=latency_s,
                retries=error.retries,
                stalls=error.stalls,
                error=error.kind,
            )
        )
        for stats in self._stats(provider, model):
            stats.calls += 1
            stats.failed_calls += 1
            stats.retries += error.retries
            stats.stalls += error.stalls

    def record_fallback(self, provider: str, model: str | None = None) -> None:
        for stats in self._stats(provider, model):
            stats.fallbacks += 1

    def record_tool(
        self, provider: str, is_error: bool, edits: Iterable[str] = (), model: str | None = None
    ) -> None:
        """One tool call; `edits` is its `ToolResult.edits` (`exact`, fallback rules, or `refused`)."""
        edits = tuple(edits)
        for stats in self._stats(provider, model):
            stats.tool_calls += 1
            stats.tool_errors += int(is_error)
            stats.edits_exact += edits.count(EXACT)
            stats.edits_refused += edits.count(REFUSED)
            stats.edits_fallback += sum(e not in (EXACT, REFUSED) for e in edits)

    @property
    def usage(self) -> Usage:
        return sum((call.usage for call in self.calls), Usage())

    @property
    def cost_usd(self) -> float:
        return round(sum(call.cost_usd for call in self.calls), 8)
