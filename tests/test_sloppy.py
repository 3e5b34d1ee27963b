"""A sloppy implementer end to end (issue 14): the scripted model's mistakes, the agent loop recovering them
through the forgiving edit tools, and the counts in the ledger, the PR's node table and the bench report."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.agent.ledger import Ledger, ProviderStats
from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, Toolbox
from bot.bench.aggregate import summarize
from bot.bench.report import edit_summary
from bot.bench.results import BenchSpec, CellKey, CellResult
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.scripted import (
    MISTAKES,
    ScriptedProvider,
    ScriptedToolCall,
    ScriptedTurn,
    Sloppiness,
    mangle,
)
from bot.providers.types import Message, ModelRequest, ModelResponse, ModelSlot, TextBlock, Usage
from bot.runs import NodeRun, NodeState
from bot.sample_repo import FILES, VALIDATE
from bot.workflow.report import nodes_table, tool_summary

SLUG = "textkit/slug.py"
EDITS = [
    ('"""Turn titles into URL slugs."""\n', '"""Turn titles into URL slugs."""\n\nimport re\n'),
    (
        '    return "-".join(title.lower().split(" "))',
        '    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))',
    ),
]


@pytest.fixture
def slug_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def script(*, multi: bool = False) -> list[ScriptedTurn]:
    edits = [{"old_string": old, "new_string": new} for old, new in EDITS]
    calls = (
        [ScriptedToolCall(name="multi_edit", arguments={"path": SLUG, "edits": edits})]
        if multi
        else [ScriptedToolCall(name="edit_file", arguments={"path": SLUG, **edit}) for edit in edits]
    )
    return [
        ScriptedTurn(tool_calls=[ScriptedToolCall(name="read_file", arguments={"path": SLUG})]),
        *(ScriptedTurn(tool_calls=[call], usage=Usage(input_tokens=100, output_tokens=10)) for call in calls),
        ScriptedTurn(text="Fixed slugify."),
    ]


def run_agent(root: Path, sloppy: Sloppiness | None, *, forgiving: bool = True, multi: bool = False):
    provider = ScriptedProvider(script(multi=multi), label="kimi", sloppy=sloppy)
    agent = Agent(
        [ModelSlot(provider, DEFAULT_MODELS["kimi"])],
        Toolbox(root, ALL, forgiving_edits=forgiving),
        AgentLimits(max_turns=20),
    )
    result = agent.run("You implement plans.", "Fix slugify.")
    return provider, agent, result


def validated(root: Path) -> bool:
    return subprocess.run(VALIDATE, shell=True, cwd=root, capture_output=True, check=False).returncode == 0


# --- the mistakes


def test_each_mistake_looks_like_a_sloppy_copy() -> None:
    text = "def f():\n    x = 1\n\n    return x\n"
    assert (
        mangle(text, "line_numbers", 7)
        == "     7\tdef f():\n     8\t    x = 1\n     9\t\n    10\t    return x\n"
    )
    assert mangle(text, "tabs") == "def f():\n\tx = 1\n\n\treturn x\n"
    assert mangle("a  \nb\n", "trailing_whitespace") == "a\nb\n"
    assert mangle("a\nb", "trailing_whitespace") == "a \nb "  # nothing to lose: some added
    assert mangle(text, "indentation") == "    def f():\n        x = 1\n\n        return x\n"
    assert mangle("    x = 1\n", "indentation") == "x = 1\n"


def test_sloppiness_is_seeded_and_leaves_other_tools_alone() -> None:
    def mistakes(seed: int) -> list[str]:
        provider = ScriptedProvider(script(), sloppy=Sloppiness(rate=0.5, seed=seed))
        for _ in range(3):
            provider.complete(_request())
        return list(provider.mistakes)

    assert mistakes(3) == mistakes(3)
    assert any(mistakes(seed) != mistakes(3) for seed in range(4, 10))
    provider = ScriptedProvider(script(), sloppy=Sloppiness(rate=1.0))
    read = provider.complete(_request()).message.tool_calls()[0]
    assert read.name == "read_file" and provider.mistakes == []
    provider.complete(_request())
    assert provider.mistakes == list(MISTAKES)


def _request() -> ModelRequest:
    return ModelRequest(system="s", messages=(Message(role="user", content=(TextBlock(text="go"),)),))


# --- end to end through the agent loop


@pytest.mark.parametrize("multi", [False, True])
def test_every_mistake_at_once_is_recovered(slug_repo: Path, multi: bool) -> None:
    _, agent, result = run_agent(slug_repo, Sloppiness(rate=1.0), multi=multi)
    assert result.completed and validated(slug_repo)
    stats = agent.ledger.providers["scripted"]
    edits = 1 if multi else 2
    assert result.turns == 2 + edits  # read, the edits, done: no turn lost
    assert (stats.edits_exact, stats.edits_fallback, stats.edits_refused) == (0, 2, 0)
    assert stats.tool_errors == 0 and stats.tool_calls == 1 + edits
    assert agent.ledger.models["scripted/scripted:kimi"] == stats


def test_without_recovery_each_refusal_costs_a_turn(slug_repo: Path) -> None:
    _, agent, result = run_agent(slug_repo, Sloppiness(rate=1.0, max_retries=2), forgiving=False)
    stats = agent.ledger.providers["scripted"]
    assert stats.edits_refused == 6 and stats.edits_exact == 0  # each edit: sent 3 times, refused 3 times
    assert stats.tool_errors == 6 and result.turns == 2 + 6
    assert not validated(slug_repo)  # the sloppy model gave up: the fix never landed


def test_a_refused_edit_is_resent_until_it_lands(slug_repo: Path) -> None:
    _, agent, result = run_agent(slug_repo, Sloppiness(rate=0.5, seed=1), forgiving=False)
    stats = agent.ledger.providers["scripted"]
    assert result.completed and validated(slug_repo), result.stop_detail
    assert stats.edits_exact == 2 and result.turns == 4 + stats.edits_refused


def test_clean_runs_apply_every_edit_exactly(slug_repo: Path) -> None:
    _, agent, result = run_agent(slug_repo, None)
    stats = agent.ledger.providers["scripted"]
    assert result.turns == 4 and validated(slug_repo)
    assert (stats.edits_exact, stats.edits_fallback, stats.edits_refused) == (2, 0, 0)


# --- counted and shown


def test_the_ledger_counts_recoveries_per_provider_and_model() -> None:
    ledger = Ledger()
    message = Message(role="assistant", content=(TextBlock(text="x"),))
    recovered = ModelResponse(
        message=message,
        stop_reason="tool_use",
        usage=Usage(),
        provider="openrouter",
        model="moonshotai/kimi-k2",
        recoveries=("leaked_tool_call", "leaked_tool_call", "missing_done"),
    )
    ledger.record(1, recovered, None)
    ledger.record_tool("openrouter", False, ("exact",), "moonshotai/kimi-k2")
    ledger.record_tool("openrouter", False, ("line_numbers+indentation", "exact"), "moonshotai/kimi-k2")
    ledger.record_tool("openrouter", True, ("refused",), "moonshotai/kimi-k2")
    ledger.record_tool("openrouter", True, (), "moonshotai/kimi-k2")
    stats = ledger.providers["openrouter"]
    assert stats.recovered_calls == 3 and stats.tool_calls == 4 and stats.tool_errors == 2
    assert (stats.edits_exact, stats.edits_fallback, stats.edits_refused, stats.edits) == (2, 1, 1, 4)
    assert ledger.models["openrouter/moonshotai/kimi-k2"] == stats


def test_the_node_table_and_bench_report_show_the_counts() -> None:
    stats = ProviderStats(
        tool_calls=31, tool_errors=2, recovered_calls=1, edits_exact=10, edits_fallback=3, edits_refused=1
    )
    assert tool_summary([stats], "kimi") == (
        "kimi: 14 edits, 3 by a fallback, 1 refused; 31 tool calls, 2 refused, 1 recovered"
    )
    assert tool_summary([ProviderStats(tool_calls=1)]) == "1 tool call"
    assert tool_summary([]) == "—"
    node = NodeRun(id="implement", kind="agent", state=NodeState.DONE, providers={"openrouter": stats})

    record = SimpleNamespace(nodes={"implement": node}, usage=Usage(), cost_usd=0.0)  # what it reads
    table = nodes_table(record)  # type: ignore[arg-type]
    summary = "| 14 edits, 3 by a fallback, 1 refused; 31 tool calls, 2 refused, 1 recovered |"
    assert table[0].endswith("| Tools |") and table[2].endswith(summary) and table[-1].endswith(summary)
    spec = BenchSpec(repo="o/r", issues=[1], plan=["opus"], impl=["kimi"])
    cell = CellResult(key=CellKey(issue=1, plan="opus", impl="kimi"), status="ok", total=50)
    row = summarize([cell], spec).pairings[0]
    counted = row.model_copy(update={"edits_exact": 10, "edits_fallback": 3, "edits_refused": 1})
    assert edit_summary(counted) == "14 edits, 3 by a fallback, 1 refused" and edit_summary(row) == "—"


def test_the_node_table_names_each_model_of_a_node() -> None:
    kimi = ProviderStats(tool_calls=6, edits_exact=2, edits_fallback=3, edits_refused=1, recovered_calls=2)
    sonnet = ProviderStats(tool_calls=2, edits_exact=1)
    node = NodeRun(
        id="implement",
        kind="agent",
        state=NodeState.DONE,
        providers={"moonshot": kimi, "anthropic": sonnet},
        models={"moonshot/kimi-k2.6": kimi, "anthropic/claude-sonnet-4-5": sonnet},
    )
    record = SimpleNamespace(nodes={"implement": node}, usage=Usage(), cost_usd=0.0)
    row = nodes_table(record)[2]  # type: ignore[arg-type]
    assert row.endswith(
        "| `kimi-k2.6`: 6 edits, 3 by a fallback, 1 refused; 6 tool calls, 2 recovered"
        "<br>`claude-sonnet-4-5`: 1 edit; 2 tool calls |"
    ), row
    total = nodes_table(record)[-1]  # type: ignore[arg-type]
    assert "7 edits, 3 by a fallback, 1 refused; 8 tool calls, 2 recovered" in total


def _bench():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_sloppy

    return bench_sloppy


@pytest.mark.parametrize("task", ["sample repo", "idna 3.7"])
def test_every_mistake_on_the_wire_and_in_the_edits_is_recovered(tmp_path: Path, task: str) -> None:
    """The benchmark's run: the real openai SDK against the sloppy fake playing a sloppy scripted model."""
    bench = _bench()
    [chosen] = [t for t in bench.tasks() if t.name == task]
    sloppy = bench.one_run(chosen, "sloppy, recovery on", 1, tmp_path / "on")
    assert sloppy.ok and sloppy.error is None, sloppy
    assert sloppy.wire_mistakes > 0 and sloppy.edit_mistakes > 0 and sloppy.fallback > 0
    assert sloppy.recovered == sloppy.wire_mistakes  # every leaked call, mixed chunk and missing [DONE]
    clean = bench.one_run(chosen, "clean", 1, tmp_path / "clean")
    assert clean.ok and (clean.wire_mistakes, clean.edit_mistakes, clean.fallback) == (0, 0, 0)
    off = bench.one_run(chosen, "sloppy, recovery off", 1, tmp_path / "off")
    assert not off.ok  # the same mistakes, unrecovered, leave the work undone


def test_a_refused_edit_on_the_wire_is_sent_again(tmp_path: Path) -> None:
    bench = _bench()
    sample = bench.tasks()[0]
    edits_only = [
        bench.one_run(sample, "sloppy edits only, recovery off", seed, tmp_path / str(seed))
        for seed in range(6)
    ]
    refused = [o for o in edits_only if o.refused]
    assert refused, "no seed made a refused edit"
    assert all(o.turns == 5 + o.refused for o in refused if o.ok)  # each refusal costs one turn
