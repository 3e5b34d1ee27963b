"""Cost arithmetic: tokens × per-million prices. Pure, so the ledger and the benchmark agree."""

from __future__ import annotations

from bot.providers.registry import Prices
from bot.providers.types import Usage

PER = 1_000_000


def cost_usd(usage: Usage, prices: Prices | None) -> float:
    """What one call cost. Reasoning tokens are inside `output_tokens` already, so they are not added
    again; an unpriced model (a local vLLM, the scripted provider) costs 0."""
    if prices is None:
        return 0.0
    total = (
        usage.input_tokens * prices.input
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
        + usage.output_tokens * prices.output
    )
    return round(total / PER, 8)


def cache_savings_usd(usage: Usage, prices: Prices | None) -> float:
    """What the cache reads saved against paying full input price for the same tokens."""
    if prices is None:
        return 0.0
    return round(usage.cache_read_tokens * (prices.input - prices.cache_read) / PER, 8)
