"""Trimming a long conversation (bot/agent/context.py): pure rules, checked against both providers' fakes."""

from __future__ import annotations

import json

import pytest

from bot.agent.context import ContextPolicy, TrimmedHistory, plan_cut, stub, stub_message
from bot.fakes.anthropic import FakeAnthropic, Reply
from bot.fakes.openai_compat import FakeOpenAI
from bot.providers.anthropic import AnthropicProvider
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import Message, ModelRequest, TextBlock, ToolCall, ToolResultBlock

POLICY = ContextPolicy(trim_at=0.8, trim_to=0.5, keep_recent=2)
WINDOW = 100_000


def conversation(turns: int, size: int = 4000) -> list[Message]:
    """A task, then per turn an assistant tool call and its result (`size` characters, ~size/4 tokens)."""
    messages = [Message(role="user", content=(TextBlock(text="Fix the bug."),))]
    for turn in range(turns):
        command = {"command": f"pytest -q tests/test_{turn}.py"} if turn % 2 else {"path": f"src/m{turn}.py"}
        call = ToolCall(
            id=f"call_{turn}", name="run" if turn % 2 else "read_file", arguments=json.dumps(command)
        )
        body = "x" * size + ("\nexit code: 1" if turn % 2 else "")
        messages.append(Message(role="assistant", content=(TextBlock(text="Looking."), call)))
        messages.append(Message(role="user", content=(ToolResultBlock(call_id=call.id, content=body),)))
    return messages


def results(messages: list[Message]) -> list[ToolResultBlock]:
    return [b for m in messages for b in m.content if isinstance(b, ToolResultBlock)]


def test_below_the_threshold_nothing_moves() -> None:
    messages = conversation(10)
    assert plan_cut(messages, 0, 70_000, 10_000, WINDOW, POLICY).index == 0


def test_past_the_threshold_the_oldest_results_go_in_one_block_and_the_recent_ones_stay() -> None:
    messages = conversation(60)  # ~60 × 1000 tokens of results
    cut = plan_cut(messages, 0, 75_000, 10_000, WINDOW, POLICY)
    assert cut.index > 0 and cut.saved_tokens >= 85_000 - 50_000
    history = TrimmedHistory(POLICY)
    history.trim(messages, 75_000, 10_000, WINDOW)
    view = history.view(messages)
    assert len(view) == len(messages)
    trimmed = [r for r in results(view) if r.content.startswith("[trimmed")]
    assert len(trimmed) > 10  # a block at once, not one a turn
    assert results(view)[-2:] == results(messages)[-2:]  # the recent ones intact
    # the stub says what was called and how it ended
    assert "run command='pytest -q tests/test_1.py'" in results(view)[1].content
    assert (
        "exit code: 1" in results(view)[1].content
        and "read_file path='src/m0.py'" in results(view)[0].content
    )


def test_nothing_recent_is_trimmed_even_when_that_leaves_no_room() -> None:
    messages = conversation(2, size=200_000)
    assert plan_cut(messages, 0, 99_000, 10_000, WINDOW, POLICY).index == 0


def test_between_trims_the_prefix_is_byte_identical() -> None:
    messages = conversation(60)
    history = TrimmedHistory(POLICY)
    assert history.trim(messages, 75_000, 10_000, WINDOW) > 0
    before = history.view(messages)
    messages += conversation(1)[1:]  # one more turn, still under the threshold after the trim
    assert history.trim(messages, 55_000, 10_000, WINDOW) == 0
    after = history.view(messages)
    dump = [m.model_dump_json() for m in before]
    assert [m.model_dump_json() for m in after[: len(before)]] == dump
    assert stub(None, results(after)[0]) == results(after)[0]  # a stub is never stubbed again


def test_stubs_keep_every_call_paired_on_both_wires() -> None:
    messages = conversation(30)
    history = TrimmedHistory(POLICY)
    history.trim(messages, 90_000, 10_000, WINDOW)
    view = history.view(messages)
    assert history.cut > 1 and view[1] is messages[1] and stub_message(messages, 1) is messages[1]
    request = ModelRequest(system="s", messages=tuple(view))
    with FakeAnthropic() as fake:
        fake.script(Reply(text="ok"))
        AnthropicProvider(DEFAULT_MODELS["sonnet"], api_key="k", base_url=fake.base_url).complete(request)
        assert fake.violations == []
        assert "[trimmed" in json.dumps(fake.last.body["messages"][2])
    with FakeOpenAI() as fake:
        fake.script(Reply(text="ok"))
        OpenAICompatProvider(DEFAULT_MODELS["gpt"], api_key="k", base_url=fake.base_url).complete(request)
        assert fake.violations == []
        assert "[trimmed" in json.dumps(fake.last.body["messages"])


def test_a_policy_must_trim_below_where_it_starts() -> None:
    with pytest.raises(ValueError, match="trim_to"):
        ContextPolicy(trim_at=0.5, trim_to=0.6)
