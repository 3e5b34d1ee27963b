"""The agent loop with the scripted provider (a real provider class) and real tools in a real git repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.agent.context import ContextPolicy
from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, READ_ONLY, Toolbox
from bot.agent.transcript import read_transcript
from bot.fakes.anthropic import FakeAnthropic, Reply, ToolCall
from bot.providers.anthropic import AnthropicProvider
from bot.providers.pricing import cache_savings_usd, cost_usd
from bot.providers.registry import DEFAULT_MODELS, ModelSpec, Provider
from bot.providers.scripted import (
    ScriptedProvider,
    ScriptedToolCall,
    ScriptedTurn,
    dump_script,
    load_script,
    turns_from_messages,
)
from bot.providers.types import (
    Message,
    ModelSlot,
    ProviderError,
    Reasoning,
    ThinkingBlock,
    ToolResultBlock,
    Usage,
)

OPUS, KIMI = DEFAULT_MODELS["opus"], DEFAULT_MODELS["kimi"]
FREE = ModelSpec(provider=Provider.SCRIPTED, model="script")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "hello.py").write_text('print("helo")\n')
    return root


def turn(text: str = "", *calls: tuple[str, dict | str], **kwargs) -> ScriptedTurn:
    return ScriptedTurn(
        text=text, tool_calls=[ScriptedToolCall(name=n, arguments=a) for n, a in calls], **kwargs
    )


def agent(repo: Path, *providers: tuple[ScriptedProvider, ModelSpec], tools=ALL, **kwargs) -> Agent:
    chain = [ModelSlot(p, spec) for p, spec in providers]
    return Agent(chain, Toolbox(repo, tools), **kwargs)


def test_a_run_reads_edits_and_finishes(repo: Path, tmp_path: Path) -> None:
    usage = Usage(input_tokens=1000, output_tokens=200, cache_write_tokens=3000, cache_read_tokens=0)
    script = ScriptedProvider(
        [
            turn("Looking around.", ("list_dir", {"path": "."}), usage=usage),
            turn("", ("read_file", {"path": "hello.py"}), usage=usage),
            turn(
                "",
                ("edit_file", {"path": "hello.py", "old_string": "helo", "new_string": "hello"}),
                usage=usage,
            ),
            turn("Fixed the typo in hello.py.", usage=usage),
        ]
    )
    result = agent(repo, (script, OPUS), transcript_path=tmp_path / "t.jsonl").run("You fix typos.", "Fix it")
    assert result.completed and result.final_text == "Fixed the typo in hello.py."
    assert (repo / "hello.py").read_text() == 'print("hello")\n'
    assert result.turns == 4 and len(result.ledger.calls) == 4
    # 1000×$4 + 3000×$5 + 200×$20 per million, four times
    assert result.ledger.cost_usd == pytest.approx(4 * 0.023)
    stats = result.ledger.providers["scripted"]
    assert (stats.calls, stats.tool_calls, stats.tool_errors) == (4, 3, 0)
    events = [line["event"] for line in read_transcript(tmp_path / "t.jsonl")]
    assert events[0] == "start" and events[-1] == "stop" and events.count("tool") == 3
    # the model saw each tool's result, paired with its call id
    second = script.requests[1].messages
    [result_block] = second[-1].content
    assert isinstance(result_block, ToolResultBlock) and "hello.py" in result_block.content
    assert result_block.call_id == second[-2].tool_calls()[0].id


def test_tool_failures_go_back_to_the_model(repo: Path) -> None:
    script = ScriptedProvider(
        [
            turn("", ("read_file", '{"path": "hello.py"')),  # malformed JSON arguments
            turn("", ("read_file", {"path": "nope.py"})),
            turn("", ("read_file", {"path": "../outside"})),
            turn("", ("write_file", {"path": "x.txt", "content": "x"})),  # not allowed for this node
            turn("I give up."),
        ]
    )
    result = agent(repo, (script, FREE), tools=READ_ONLY).run("system", "task")
    assert result.completed
    errors = [r.messages[-1].content[0] for r in script.requests[1:]]
    assert all(isinstance(e, ToolResultBlock) and e.is_error for e in errors)
    assert "JSON" in errors[0].content and "nope.py" in errors[1].content
    assert "outside" in errors[2].content and "not available" in errors[3].content
    assert result.ledger.providers["scripted"].tool_errors == 4
    assert not (repo / "x.txt").exists()


@pytest.mark.parametrize(
    ("limits", "usage", "stop"),
    [
        (AgentLimits(max_turns=2), Usage(), "max_turns"),
        (AgentLimits(max_tokens=5000), Usage(input_tokens=3000), "token_budget"),
        (AgentLimits(max_cost_usd=0.01), Usage(output_tokens=300), "cost_budget"),  # 300 × $25/M = $0.0075
    ],
)
def test_budgets_stop_cleanly_and_keep_the_work(repo: Path, limits, usage, stop) -> None:
    turns = [turn("", ("write_file", {"path": f"f{i}.txt", "content": "x"}), usage=usage) for i in range(5)]
    result = agent(repo, (ScriptedProvider(turns), OPUS), limits=limits).run("system", "task")
    assert result.stop == stop and not result.completed
    assert result.stop_detail
    assert (repo / "f0.txt").exists() and (repo / "f1.txt").exists()


def test_wall_clock_budget(repo: Path) -> None:
    turns = [turn("", ("run", {"command": "sleep 0.3"})) for _ in range(3)]
    result = agent(repo, (ScriptedProvider(turns), FREE), limits=AgentLimits(max_wall_s=0.2)).run("s", "t")
    assert result.stop == "wall_clock" and result.turns == 1


def test_fallback_after_consecutive_failures(repo: Path) -> None:
    primary = ScriptedProvider(
        [
            turn("", ("list_dir", {}), thinking="deep thoughts"),
            turn(error="overloaded"),
            turn(error="stall"),
        ],
        label="kimi",
    )
    backup = ScriptedProvider([turn("Done by the backup.")], label="sonnet")
    result = agent(
        repo, (primary, KIMI), (backup, DEFAULT_MODELS["sonnet"]), reasoning=Reasoning(enabled=True)
    ).run("system", "task")
    assert result.completed and result.final_text == "Done by the backup."
    kinds = [(c.model, c.error) for c in result.ledger.calls]
    assert kinds == [
        ("scripted:kimi", None),
        ("scripted:kimi", "overloaded"),
        ("scripted:kimi", "stall"),
        ("scripted:sonnet", None),
    ]
    assert result.ledger.calls[-1].fallback_from == "scripted"
    assert result.ledger.providers["scripted"].fallbacks == 1
    assert result.ledger.providers["scripted"].failed_calls == 2
    # thinking belongs to the provider that produced it: the backup gets neither thinking nor a budget
    [request] = backup.requests
    assert request.reasoning.enabled is False
    assert not any(isinstance(b, ThinkingBlock) for m in request.messages for b in m.content)
    assert primary.requests[1].reasoning.enabled is True


def test_chain_exhausted_is_a_reported_stop(repo: Path) -> None:
    only = ScriptedProvider([turn("", ("list_dir", {})), turn(error="server"), turn(error="server")])
    result = agent(repo, (only, FREE)).run("system", "task")
    assert result.stop == "provider_failed" and "no fallback is left" in result.stop_detail
    assert result.turns == 2 and result.ledger.calls[0].error is None


def test_cost_arithmetic_against_hand_computed_values() -> None:
    usage = Usage(
        input_tokens=1000,
        cache_write_tokens=2000,
        cache_read_tokens=10_000,
        output_tokens=500,
        reasoning_tokens=400,
    )
    # opus: 1000×4 + 2000×5 + 10000×0.2 + 500×20 = 26 000 micro-dollars; reasoning is inside output
    assert cost_usd(usage, OPUS.prices) == pytest.approx(0.026)
    # kimi: 1000×0.95 + 2000×0.95 + 10000×0.16 + 500×4 = 6 450
    assert cost_usd(usage, KIMI.prices) == pytest.approx(0.00645)
    assert cache_savings_usd(usage, OPUS.prices) == pytest.approx(10_000 * 3.8 / 1e6)
    assert cost_usd(usage, None) == 0.0


def test_every_default_model_has_dated_prices() -> None:
    for alias in ("opus", "sonnet", "haiku", "kimi", "gpt"):
        prices = DEFAULT_MODELS[alias].prices
        assert prices and prices.as_of and prices.source.startswith("https://")


def test_scripts_round_trip_and_are_labelled(tmp_path: Path) -> None:
    turns = [turn("hi", ("read_file", {"path": "a"}), thinking="hmm"), turn("bye")]
    path = tmp_path / "plan.jsonl"
    path.write_text("# a comment\n" + dump_script(turns))
    provider = ScriptedProvider.from_file(path)
    assert provider.name == "scripted" and provider.model == "scripted:plan"
    assert load_script(path) == turns
    messages = [Message(role="user", content=())]
    from bot.providers.types import ModelRequest

    for _ in turns:
        messages.append(provider.complete(ModelRequest(system="s", messages=tuple(messages))).message)
    assert [t.model_dump() for t in turns_from_messages(messages)] == [t.model_dump() for t in turns]
    with pytest.raises(ProviderError) as raised:
        provider.complete(ModelRequest(system="s", messages=()))
    assert raised.value.kind == "script_exhausted"


def test_a_bad_script_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"txet": "typo"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_script(path)


def test_a_full_context_window_is_a_clean_stop(repo: Path) -> None:
    small = ModelSpec(
        provider=Provider.SCRIPTED, model="small", context_window=20_000, max_output_tokens=4_000
    )
    script = ScriptedProvider(
        [
            turn(
                "",
                ("list_dir", {}),
                usage=Usage(input_tokens=9_000, cache_read_tokens=8_000, output_tokens=100),
            ),
            turn("never asked"),
        ]
    )
    result = agent(repo, (script, small)).run("system", "task")
    assert result.stop == "context_full" and "20,000-token context window" in result.stop_detail
    assert len(script.requests) == 1


def _long_run(repo: Path, policy: ContextPolicy) -> tuple:
    """30 reads of a ~2,000-token file on a 20,000-token window, through the caching fake Anthropic API."""
    (repo / "big.py").write_text("".join(f"value_{i} = {i}  # a line of the module\n" for i in range(200)))
    spec = DEFAULT_MODELS["sonnet"].model_copy(update={"context_window": 20_000, "max_output_tokens": 1000})
    read = ToolCall("read_file", {"path": "big.py"})
    with FakeAnthropic(cache=True) as fake:
        fake.script(*[Reply(tool_calls=[read]) for _ in range(29)], Reply(text="All read."))
        provider = AnthropicProvider(spec, api_key="k", base_url=fake.base_url)
        looped = Agent([ModelSlot(provider, spec)], Toolbox(repo, READ_ONLY), context=policy)
        result = looped.run("You read.", "Read big.py thirty times.")
        assert fake.violations == []
    return result, looped


def test_a_long_run_trims_old_tool_results_instead_of_stopping(repo: Path) -> None:
    off, _ = _long_run(repo, ContextPolicy(enabled=False))
    assert off.stop == "context_full" and off.turns < 30
    on, looped = _long_run(repo, ContextPolicy(keep_recent=2))
    assert on.completed and on.turns == 30 and looped.history.trims >= 1
    # the result keeps every output; only what was sent got stubs
    assert all("value_199" in b.content for b in (m.content[0] for m in on.messages[2::2]))
    assert looped.history.view(on.messages)[2].content[0].content.startswith("[trimmed")


def test_context_full_still_stops_when_trimming_cannot_make_room(repo: Path) -> None:
    result, looped = _long_run(repo, ContextPolicy(keep_recent=50))
    assert result.stop == "context_full" and looped.history.trims == 0
