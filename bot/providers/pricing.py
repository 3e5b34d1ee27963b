"""Cost arithmetic: tokens × per-million prices. Pure, so the ledger and the benchmark agree."""

from __future__ import annotations

from bot.providers.registry import Prices, Rates
from bot.providers.types import Usage

PER = 1_000_000
UNPRICED_TEXT = "unpriced"


def rates_for(usage: Usage, prices: Prices) -> Rates:
    """The rates one call bills at: a long-prompt tier, when the model has one and this call's prompt
    (uncached input, cache reads and cache writes) is past it, applies to the whole call."""
    tier = prices.long_prompt
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return tier if tier is not None and prompt > tier.above_tokens else prices


def cost_usd(usage: Usage, prices: Prices | None) -> float:
    """What one call cost. Reasoning tokens are inside `output_tokens` already, so they are not added
    again; an unpriced model (a local vLLM, the scripted provider) costs 0. `usage` must be one call's:
    the long-prompt tier is decided per call."""
    if prices is None:
        return 0.0
    rates = rates_for(usage, prices)
    total = (
        usage.input_tokens * rates.input
        + usage.cache_write_tokens * rates.cache_write
        + usage.cache_read_tokens * rates.cache_read
        + usage.output_tokens * rates.output
    )
    return round(total / PER, 8)


def cache_savings_usd(usage: Usage, prices: Prices | None) -> float:
    """What the cache reads saved against paying full input price for the same tokens."""
    if prices is None:
        return 0.0
    rates = rates_for(usage, prices)
    return round(usage.cache_read_tokens * (rates.input - rates.cache_read) / PER, 8)


def _money(value: float) -> str:
    """$4, $0.20, $0.125: whole dollars bare, cents always shown, sub-cent digits only when there."""
    if value == int(value):
        return f"${value:,.0f}"
    text = f"{value:.4f}".rstrip("0")
    return f"${text}" if len(text.split(".")[1]) > 2 else f"${value:.2f}"


def rates_text(rates: Rates) -> str:
    """`$4 / $5 / $0.20 / $20`: input / cache write / cache read / output per million tokens."""
    return " / ".join(_money(v) for v in (rates.input, rates.cache_write, rates.cache_read, rates.output))


def prices_text(prices: Prices | None) -> str:
    """The rates as a reply shows them, the long-prompt tier after them."""
    if prices is None:
        return UNPRICED_TEXT
    text = rates_text(prices)
    if prices.long_prompt is not None:
        tier = prices.long_prompt
        text += f"; above {tier.above_tokens:,} prompt tokens {rates_text(tier)}"
    return text


def prices_date(prices: Prices | None) -> str:
    """When the prices were read, linked to where: `[2026-12-02](https://…)`; `—` when unknown."""
    if prices is None or not (prices.as_of or prices.source):
        return "—"
    if not prices.source.startswith("https://"):
        return " ".join(part for part in (prices.as_of, prices.source) if part)
    return f"[{prices.as_of or 'undated'}]({prices.source})"
