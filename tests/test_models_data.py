"""The bundled model aliases as data: every one priced, dated and sourced; the file read through the same
schema as any models file; `ARCHON_MODELS_FILE` adding and replacing aliases; `/archon models` showing
the prices with their date and source; long-prompt tiers billed per call."""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from bot.providers.pricing import cost_usd, prices_date, prices_text
from bot.providers.registry import (
    BUNDLED_MODELS,
    DEFAULT_MODELS,
    ModelRegistry,
    Provider,
    RegistryError,
    bundled_models,
    load_registry,
    parse_models_text,
    unpriced_refusal,
)
from bot.providers.types import Usage
from bot.sample_repo import write_models_file
from tests.test_triage import command, only_reply

BUNDLED_TEXT = resources.files("bot.providers").joinpath(BUNDLED_MODELS).read_text()
# The aliases tests, the demo and the default roles (ARCHON_DEFAULT_MODELS, ARCHON_FALLBACKS) rely on.
RELIED_ON = ("opus", "sonnet", "haiku", "kimi", "gpt")

DEPLOYMENT_FILE = """\
models:
  kimi:
    provider: openrouter
    model: moonshotai/kimi-k2.6
    description: Kimi through OpenRouter
    prices: {input: 1, cache_write: 1, cache_read: 0.2, output: 5, as_of: 2026-11-30,
             source: "https://openrouter.ai/moonshotai/kimi-k2.6"}
  local:
    provider: openai
    model: qwen-local
    description: a model on our own server
    prices: {input: 0, cache_write: 0, cache_read: 0, output: 0, as_of: "2026-12-01", source: ours}
"""


def test_every_bundled_alias_is_priced_dated_and_sourced() -> None:
    assert set(RELIED_ON) <= set(DEFAULT_MODELS)
    for alias, spec in DEFAULT_MODELS.items():
        assert spec.prices is not None, alias
        assert date.fromisoformat(spec.prices.as_of) <= date.today(), alias
        assert spec.prices.source.startswith("https://"), alias
        assert unpriced_refusal(alias, spec, allow=False) is None
        assert spec.max_output_tokens < spec.context_window, alias


def test_the_bundled_file_goes_through_the_models_file_schema() -> None:
    assert parse_models_text(BUNDLED_TEXT, "bundled") == bundled_models() == dict(DEFAULT_MODELS)
    assert ModelRegistry.default().get("OPUS") == DEFAULT_MODELS["opus"]
    broken = BUNDLED_TEXT.replace(
        "    model: claude-opus-5-5\n", "    model: claude-opus-5-5\n    modle: x\n"
    )
    with pytest.raises(RegistryError, match=r"^bundled: models\.opus\.modle: Extra inputs"):
        parse_models_text(broken, "bundled")
    with pytest.raises(RegistryError, match=r"models\.opus\.prices\.as_of"):
        parse_models_text(BUNDLED_TEXT.replace('as_of: "2026-12-02"', "as_of: last week", 1), "bundled")


def test_the_bundled_ids_are_the_current_ones() -> None:
    models = {alias: (spec.provider, spec.model) for alias, spec in DEFAULT_MODELS.items()}
    assert models["opus"] == (Provider.ANTHROPIC, "claude-opus-5-5")
    assert models["sonnet"] == (Provider.ANTHROPIC, "claude-sonnet-5-5")
    assert models["haiku"] == (Provider.ANTHROPIC, "claude-haiku-5-5")
    assert models["kimi"] == (Provider.MOONSHOT, "kimi-k2.6")
    assert models["gpt"] == (Provider.OPENAI, "gpt-6.2-sol")
    assert DEFAULT_MODELS["opus"].context_window == 1_000_000
    assert DEFAULT_MODELS["kimi"].context_window == 262_144


def test_the_deployment_file_adds_and_replaces_aliases(tmp_path: Path) -> None:
    path = tmp_path / "models.yml"
    path.write_text(DEPLOYMENT_FILE)
    registry = load_registry(path)
    assert registry.aliases() == sorted({*DEFAULT_MODELS, "local"})
    kimi = registry.get("kimi")
    assert kimi is not None and kimi.provider is Provider.OPENROUTER and kimi.model == "moonshotai/kimi-k2.6"
    assert kimi.prices is not None and kimi.prices.as_of == "2026-11-30"  # unquoted YAML date, kept as text
    assert registry.get("opus") == DEFAULT_MODELS["opus"]  # the bundled rest is untouched
    path.write_text("models:\n  kimi: {provider: moonshot}\n")
    with pytest.raises(RegistryError, match=rf"^{path}: models\.kimi\.model: Field required"):
        load_registry(path)


def test_the_demo_models_file_keeps_every_relied_on_alias_priced(tmp_path: Path) -> None:
    registry = load_registry(write_models_file(tmp_path / "demo.yml"))
    for alias in RELIED_ON:
        spec = registry.get(alias)
        assert spec is not None and spec.provider is Provider.SCRIPTED
        assert spec.prices == DEFAULT_MODELS[alias].prices


@pytest.mark.parametrize(
    ("alias", "prompt", "expected"),
    [
        # haiku: up to 100,000 prompt tokens 0.10 in / 0.01 read / 0.50 out, five times that above
        ("haiku", 100_000, (60_000 * 0.1 + 40_000 * 0.01 + 1_000 * 0.5) / 1e6),
        ("haiku", 100_001, (60_001 * 0.5 + 40_000 * 0.05 + 1_000 * 2.5) / 1e6),
        # gpt: above 272,000 input tokens the whole call at 2× input and cache, 1.5× output
        ("gpt", 272_000, (232_000 * 2 + 40_000 * 0.1 + 1_000 * 10) / 1e6),
        ("gpt", 272_001, (232_001 * 4 + 40_000 * 0.2 + 1_000 * 15) / 1e6),
        ("opus", 900_000, (860_000 * 4 + 40_000 * 0.2 + 1_000 * 20) / 1e6),  # one rate at any length
    ],
)
def test_a_long_prompt_bills_the_whole_call_at_the_long_rates(
    alias: str, prompt: int, expected: float
) -> None:
    usage = Usage(input_tokens=prompt - 40_000, cache_read_tokens=40_000, output_tokens=1_000)
    assert cost_usd(usage, DEFAULT_MODELS[alias].prices) == pytest.approx(expected)


def test_prices_read_as_people_read_them() -> None:
    opus, haiku = DEFAULT_MODELS["opus"].prices, DEFAULT_MODELS["haiku"].prices
    assert prices_text(opus) == "$4 / $5 / $0.20 / $20"
    assert prices_text(haiku) == (
        "$0.10 / $0.125 / $0.01 / $0.50; above 100,000 prompt tokens $0.50 / $0.625 / $0.05 / $2.50"
    )
    assert prices_text(None) == "unpriced" and prices_date(None) == "—"
    assert prices_date(opus) == "[2026-12-02](https://platform.claude.com/docs/en/models/opus-5-5/overview)"


@pytest.mark.usefixtures("worker_env")
def test_archon_models_shows_prices_with_their_date_and_source(github, redis_conn) -> None:
    command(github, redis_conn, "/archon models", sender="reader")
    reply = only_reply(github)
    opus = (
        "| `opus` | anthropic | `claude-opus-5-5` | $4 / $5 / $0.20 / $20 "
        "| [2026-12-02](https://platform.claude.com/docs/en/models/opus-5-5/overview) | strongest planner |"
    )
    assert opus in reply
    assert "| `gpt` | openai | `gpt-6.2-sol` |" in reply and "above 272,000 prompt tokens" in reply
    assert "USD per million tokens, input / cache write / cache read / output" in reply


@pytest.mark.usefixtures("worker_env")
def test_archon_models_shows_the_deployment_file(github, redis_conn, tmp_path, monkeypatch) -> None:
    path = tmp_path / "deployment-models.yml"
    path.write_text(DEPLOYMENT_FILE)
    monkeypatch.setenv("ARCHON_MODELS_FILE", str(path))
    command(github, redis_conn, "/archon models", sender="reader")
    reply = only_reply(github)
    assert "| `kimi` | openrouter | `moonshotai/kimi-k2.6` | $1 / $1 / $0.20 / $5 " in reply
    assert "[2026-11-30](https://openrouter.ai/moonshotai/kimi-k2.6)" in reply
    assert "| `local` | openai | `qwen-local` | $0 / $0 / $0 / $0 | 2026-12-01 ours |" in reply
    assert "| `opus` | anthropic | `claude-opus-5-5` |" in reply
