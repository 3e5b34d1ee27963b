"""Issue 14, the wire half: tool calls that survive a sloppy Kimi host.

Through the real `openai` SDK against the fake's sloppy mode (streamed and not): leaked template markup
(one and several calls), mixed whole/delta argument chunks, a missing `[DONE]` (the body ends, or hangs);
what `ModelResponse.recoveries` says about each; clean answers untouched. Then the engine: an Agent on the
Kimi adapter finishes a real edit in a real worktree although every tool call leaks, where with recovery
off the node ends as if the model were done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.agent.loop import Agent, AgentResult
from bot.agent.tools import ALL, Toolbox
from bot.fakes.openai_compat import SLOPPY_ENV, FakeOpenAI, Reply, Sloppy, ToolCall
from bot.providers import wire_recovery
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import (
    CallLimits,
    Message,
    ModelRequest,
    ModelSlot,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
)
from tests import test_agent_e2e

repo = test_agent_e2e.repo  # the same one-file repository fixture
KEY = "sk-test-0123456789abcdef"
KIMI = DEFAULT_MODELS["kimi"]
FAST = CallLimits(timeout_s=20, stall_timeout_s=4.0, max_retries=2)
READ = ToolSpec(
    name="read_file",
    description="Read a file.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}},
)
TWO_CALLS = [ToolCall("read_file", {"path": "a.py"}), ToolCall("read_file", {"path": "b.py"})]
Connect = Callable[..., OpenAICompatProvider]
SECTION, END_SECTION = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
BEGIN, ARGS, END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"


def kimi_call(tool_id: str, arguments: str, end: str = END) -> str:
    return BEGIN + tool_id + ARGS + arguments + end


@pytest.fixture
def connect() -> Iterator[Connect]:
    opened: list[OpenAICompatProvider] = []

    def make(fake: FakeOpenAI, *, stream: bool = True, recover: bool = True) -> OpenAICompatProvider:
        provider = OpenAICompatProvider(
            KIMI, api_key=KEY, base_url=fake.base_url, limits=FAST, stream=stream, recover=recover
        )
        opened.append(provider)
        return provider

    yield make
    for provider in opened:
        provider.close()


def sloppy(**rates: float) -> FakeOpenAI:
    return FakeOpenAI(moonshot=True, sloppy=Sloppy(seed=7, **rates))


def ask() -> ModelRequest:
    return ModelRequest(
        system="You are Archon.",
        messages=(Message(role="user", content=(TextBlock(text="Read both files."),)),),
        tools=(READ,),
    )


streamed = pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])


# --- leaked markup ------------------------------------------------------------------------------------


@streamed
def test_one_leaked_call_becomes_a_tool_call(connect: Connect, stream: bool) -> None:
    with sloppy(leak_markup=1.0) as fake:
        fake.script(Reply(text="Reading it.", tool_calls=TWO_CALLS[:1]))
        response = connect(fake, stream=stream).complete(ask())

    (call,) = response.message.tool_calls()
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "functions.read_file:0",
        "read_file",
        {"path": "a.py"},
    )
    assert response.message.text() == "Reading it." and "<|" not in response.message.text()
    assert response.stop_reason == "tool_use" and response.recoveries == ("leaked_tool_call",)
    assert fake.quirks == ["leak_markup"]


@streamed
def test_several_leaked_calls_keep_their_order_and_ids(connect: Connect, stream: bool) -> None:
    with sloppy(leak_markup=1.0) as fake:
        fake.script(Reply(text="", tool_calls=TWO_CALLS))
        response = connect(fake, stream=stream).complete(ask())

    calls = response.message.tool_calls()
    assert [c.id for c in calls] == ["functions.read_file:0", "functions.read_file:1"]
    assert [json.loads(c.arguments)["path"] for c in calls] == ["a.py", "b.py"]
    assert response.message.text() == "" and response.recoveries == ("leaked_tool_call",) * 2


def test_leaked_calls_answered_on_the_next_turn_are_a_valid_conversation(connect: Connect) -> None:
    """The recovered ids go back as `tool_call_id`s: the fake checks every call gets its answer."""
    with sloppy(leak_markup=1.0) as fake:
        fake.script(Reply(tool_calls=TWO_CALLS), Reply(text="Both read."))
        model = connect(fake)
        first = model.complete(ask())
        results = tuple(ToolResultBlock(call_id=c.id, content="x = 1") for c in first.message.tool_calls())
        request = ask().model_copy(
            update={"messages": (*ask().messages, first.message, Message(role="user", content=results))}
        )
        second = model.complete(request)
        assert fake.violations == []
    assert second.message.text() == "Both read." and second.recoveries == ()


def test_markup_leaked_into_reasoning_is_recovered_too(connect: Connect) -> None:
    markup = SECTION + kimi_call("functions.read_file:0", '{"path": "a.py"}') + END_SECTION
    with FakeOpenAI(moonshot=True) as fake:
        fake.script(Reply(thinking="I need a.py." + markup))
        response = connect(fake).complete(ask())

    (call,) = response.message.tool_calls()
    assert call.name == "read_file" and response.recoveries == ("leaked_tool_call",)
    assert response.message.content[0].text == "I need a.py."  # type: ignore[union-attr]


@streamed
def test_text_that_merely_mentions_the_tokens_is_untouched(connect: Connect, stream: bool) -> None:
    text = "Chat templates use <|im_start|> and <|tool_call_begin|> tokens; a <| b |> c."
    with FakeOpenAI(moonshot=True) as fake:
        fake.script(Reply(text=text))
        response = connect(fake, stream=stream).complete(ask())

    assert response.message.text() == text and response.message.tool_calls() == []
    assert response.stop_reason == "end_turn" and response.recoveries == ()


@streamed
def test_a_clean_answer_has_no_recoveries(connect: Connect, stream: bool) -> None:
    with FakeOpenAI(moonshot=True) as fake:
        fake.script(Reply(text="Reading.", tool_calls=TWO_CALLS), Reply(text="Done."))
        model = connect(fake, stream=stream)
        responses = [model.complete(ask()) for _ in range(2)]

    assert [r.recoveries for r in responses] == [(), ()] and fake.quirks == []
    assert len(responses[0].message.tool_calls()) == 2


def test_recovery_off_leaves_the_markup_as_text(connect: Connect) -> None:
    with sloppy(leak_markup=1.0) as fake:
        fake.script(Reply(tool_calls=TWO_CALLS[:1]))
        response = connect(fake, recover=False).complete(ask())

    assert response.message.tool_calls() == [] and response.stop_reason == "end_turn"
    assert "<|tool_call_begin|>" in response.message.text() and response.recoveries == ()


# --- mixed argument chunks -------------------------------------------------------------------------


def test_mixed_whole_and_delta_arguments_are_not_doubled(connect: Connect) -> None:
    calls = [ToolCall("read_file", {"path": f"src/module_{n}.py", "limit": n}) for n in range(6)]
    with sloppy(mixed_chunks=1.0) as fake:
        fake.script(Reply(tool_calls=calls))
        response = connect(fake).complete(ask())

    got = response.message.tool_calls()
    assert [json.loads(c.arguments) for c in got] == [dict(c.input) for c in calls]
    assert len({c.id for c in got}) == 6  # a repeated whole chunk opened no new call
    assert response.recoveries == ("mixed_arguments",) * 6 and fake.quirks == ["mixed_chunks"] * 6


@pytest.mark.parametrize(
    "fragments",
    [
        ['{"path":', ' "a.py"}', '{"path": "a.py"}'],  # deltas, then the whole repeated
        ['{"path": "a.py"}', '{"path":', ' "a.py"}'],  # the whole first, then deltas of it
        ['{"path": "a.py"}', '{"path": "a.py"}'],  # the whole twice
        ['{"path":"a.py"}', '{"path": ', '"a.py"}'],  # the repeat spaced differently
    ],
)
def test_join_arguments_untangles_each_mix(fragments: list[str]) -> None:
    arguments, mixed = wire_recovery.join_arguments(fragments)

    assert json.loads(arguments) == {"path": "a.py"} and mixed


@pytest.mark.parametrize("fragments", [['{"pa', 'th": 1}'], ['{"cmd": "py', "test"], ['{"a": 1}']])
def test_join_arguments_leaves_plain_and_broken_arguments_alone(fragments: list[str]) -> None:
    assert wire_recovery.join_arguments(fragments) == ("".join(fragments), False)


# --- [DONE] --------------------------------------------------------------------------------------------


def test_a_stream_without_done_is_a_finished_answer(connect: Connect) -> None:
    with sloppy(drop_done=1.0) as fake:
        fake.script(Reply(text="All green."))
        response = connect(fake).complete(ask())
        requests = len(fake.requests)

    assert response.message.text() == "All green." and response.stop_reason == "end_turn"
    assert response.recoveries == ("missing_done",) and fake.quirks == ["drop_done"]
    assert (response.retries, response.stalls, requests) == (0, 0, 1)
    assert response.usage.output_tokens == 5  # the usage chunk after finish_reason was still read


def test_a_stream_that_hangs_after_finish_reason_is_not_a_stall(connect: Connect) -> None:
    """No [DONE] and the connection stays open: the answer is returned, not restarted as a stall."""
    with sloppy(drop_done=1.0) as fake:
        fake.script(Reply(tool_calls=TWO_CALLS[:1], hang=30, hang_after_events=999))
        response = connect(fake).complete(ask())
        requests = len(fake.requests)

    assert [c.name for c in response.message.tool_calls()] == ["read_file"]
    assert response.recoveries == ("missing_done",)
    assert (response.retries, response.stalls, requests) == (0, 0, 1)


def test_with_recovery_off_that_hang_is_a_stall(connect: Connect) -> None:
    with sloppy(drop_done=1.0) as fake:
        fake.script(Reply(text="late", hang=30, hang_after_events=999), Reply(text="again"))
        response = connect(fake, recover=False).complete(ask())

    assert response.stalls == 1 and response.message.text() == "again"


# --- the markup grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "ids"),
    [
        (  # Kimi's own form, two calls
            SECTION
            + kimi_call("functions.read_file:0", '{"path": "a"}')
            + kimi_call("functions.run:1", '{"command": "ls"}')
            + END_SECTION,
            ["functions.read_file:0", "functions.run:1"],
        ),
        (  # no `functions.` prefix, newlines and spaces between the tokens
            f'{SECTION}\n {BEGIN} read_file:3 \n{ARGS}\n{{"path": "a"}}\n{END}\n{END_SECTION}',
            ["functions.read_file:3"],
        ),
        (  # no section tokens, no index, the singular section end, no last end token
            kimi_call("read_file", '{"path": "a"}')
            + kimi_call("functions.run", '{"command": "ls"}', end="<|tool_call_section_end|>"),
            ["functions.read_file:0", "functions.run:1"],
        ),
    ],
    ids=["kimi", "spaced", "truncated"],
)
def test_markup_variants_hosts_emit(markup: str, ids: list[str]) -> None:
    text, calls = wire_recovery.leaked_calls("Let me look. " + markup + " Then I decide.")

    assert [c.id for c in calls] == ids and text == "Let me look. Then I decide."
    assert all(isinstance(json.loads(c.arguments), dict) for c in calls)


def test_repeated_indices_still_get_distinct_ids() -> None:
    call = (
        '<|tool_call_begin|>functions.read_file:0<|tool_call_argument_begin|>{"path": "a"}<|tool_call_end|>'
    )

    _, calls = wire_recovery.leaked_calls(call + call)

    assert len({c.id for c in calls}) == 2


def test_sloppy_settings_read_from_the_environment() -> None:
    assert Sloppy.parse("all=0.3,seed=4") == Sloppy(leak_markup=0.3, mixed_chunks=0.3, drop_done=0.3, seed=4)
    assert FakeOpenAI.from_env({}).sloppy == Sloppy()
    assert FakeOpenAI.from_env({SLOPPY_ENV: "drop_done=1"}).sloppy == Sloppy(drop_done=1.0)
    with pytest.raises(ValueError, match=SLOPPY_ENV):
        Sloppy.parse("leak=0.3")


# --- the engine -----------------------------------------------------------------------------------------


FIX = [
    Reply(text="Reading the file.", tool_calls=[ToolCall("read_file", {"path": "greet.py"})]),
    Reply(
        tool_calls=[ToolCall("edit_file", {"path": "greet.py", "old_string": "Helo", "new_string": "Hello"})]
    ),
    Reply(tool_calls=[ToolCall("run", {"command": "python3 -c 'import greet; print(greet.greet(\"A\"))'"})]),
    Reply(text="Fixed the greeting typo."),
]


def fix_with(repo: Path, fake: FakeOpenAI, *, recover: bool) -> tuple[AgentResult, list[str]]:
    fake.script(*FIX)
    provider = OpenAICompatProvider(KIMI, api_key=KEY, base_url=fake.base_url, limits=FAST, recover=recover)
    try:
        result = Agent([ModelSlot(provider, KIMI)], Toolbox(repo, ALL)).run(
            "You fix bugs.", "Fix the greeting."
        )
    finally:
        provider.close()
    return result, fake.violations


@pytest.mark.parametrize(
    "rates",
    [
        {"leak_markup": 1.0},
        {"mixed_chunks": 1.0, "drop_done": 1.0},
        {"leak_markup": 0.5, "mixed_chunks": 0.5, "drop_done": 0.5},
    ],
    ids=["every-call-leaks", "mixed-and-no-done", "half-of-everything"],
)
def test_agent_on_a_sloppy_kimi_finishes_the_edit(repo: Path, rates: dict[str, float]) -> None:
    with sloppy(**rates) as fake:
        result, violations = fix_with(repo, fake, recover=True)
        quirks = list(fake.quirks)

    assert violations == [] and quirks  # the fake did misbehave
    assert result.completed and result.final_text == "Fixed the greeting typo."
    assert result.turns == 4 and 'return "Hello, " + name' in (repo / "greet.py").read_text()


def test_without_recovery_a_leaked_call_ends_the_node_as_if_done(repo: Path) -> None:
    """What issue 14 found: the markup reads as a final answer, and nothing is edited."""
    with sloppy(leak_markup=1.0) as fake:
        result, _ = fix_with(repo, fake, recover=False)

    assert result.completed and result.turns == 1
    assert "<|tool_call_begin|>" in result.final_text
    assert "Helo, " in (repo / "greet.py").read_text()
