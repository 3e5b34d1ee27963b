"""The ledger: what every model call of a run used, cost and went through, and the per-provider
reliability counters the benchmark reports (tool-call failures, retries, stalls, fallbacks)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
    tool_errors: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0


class Ledger(BaseModel):
    calls: list[CallRecord] = Field(default_factory=list)
    providers: dict[str, ProviderStats] = Field(default_factory=dict)

    def _stats(self, provider: str) -> ProviderStats:
        if provider not in self.providers:
            self.providers[provider] = ProviderStats()
        return self.providers[provider]

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
        stats = self._stats(response.provider)
        stats.calls += 1
        stats.retries += response.retries
        stats.stalls += response.stalls
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
        stats = self._stats(provider)
        stats.calls += 1
        stats.failed_calls += 1
        stats.retries += error.retries
        stats.stalls += error.stalls

    def record_fallback(self, provider: str) -> None:
        self._stats(provider).fallbacks += 1

    def record_tool(self, provider: str, is_error: bool) -> None:
        stats = self._stats(provider)
        stats.tool_calls += 1
        stats.tool_errors += int(is_error)

    @property
    def usage(self) -> Usage:
        return sum((call.usage for call in self.calls), Usage())

    @property
    def cost_usd(self) -> float:
        return round(sum(call.cost_usd for call in self.calls), 8)
