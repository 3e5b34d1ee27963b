"""`AnthropicProvider` through the real SDK against the shared fake Messages API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.fakes.anthropic import Drop, FakeAnthropic, HttpError, Reply, ToolCall, Usage
from bot.providers.anthropic import AnthropicProvider, wire_messages
from bot.providers.registry import DEFAULT_MODELS, ModelSpec
from bot.providers.types import (
    CallLimits,
    Message,
    ModelRequest,
    ProviderError,
    Reasoning,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
)
from bot.providers.types import ToolCall as Call
from bot.providers.types import Usage as Tokens

SPEC = DEFAULT_MODELS["sonnet"]
#: A model of the budget form (Claude 4.5 and older), for the `budget_tokens` arithmetic.
BUDGET_SPEC = ModelSpec(provider="anthropic", model="claude-sonnet-4-5", max_output_tokens=64_000)
KEY = "sk-ant-api03-never-print-me"
EPHEMERAL = {"type": "ephemeral"}
ASK = Message(role="user", content=(TextBlock(text="Fix the failing test."),))
TOOLS = (
    ToolSpec(name="read_file", description="Read a file.", parameters={"type": "object"}),
    ToolSpec(name="run", description="Run a command.", parameters={"type": "object"}),
)
Claude = Callable[..., AnthropicProvider]  # the fixture: limits in, provider on the fake out
STALL = 0.3  # seconds of silence that count as a stall; the fake hangs far longer


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def claude(fake: FakeAnthropic) -> Iterator[Claude]:
    """Providers on the fake with test limits (overridable); closed after the test."""
    made: list[AnthropicProvider] = []

    def make(spec: ModelSpec = SPEC, **limits: Any) -> AnthropicProvider:
        settings = CallLimits(**{"stall_timeout_s": 5.0, "max_retries": 2, **limits})
        made.append(AnthropicProvider(spec, api_key=KEY, base_url=fake.base_url, limits=settings))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


def ask(*messages: Message, **fields: Any) -> ModelRequest:
    return ModelRequest(system="You are Archon.", messages=(ASK, *messages), **fields)


def results(*blocks: ToolResultBlock) -> Message:
    return Message(role="user", content=blocks)


def breakpoints(body: dict[str, Any]) -> list[str]:
    """Where the request put `cache_control`: system, tools, messages.<index>.<position>."""
    marks = [f"system.{i}" for i, block in enumerate(body.get("system", [])) if "cache_control" in block]
    marks += [f"tools.{tool['name']}" for tool in body.get("tools", []) if "cache_control" in tool]
    for index, message in enumerate(body["messages"]):
        marks += [f"messages.{index}.{i}" for i, b in enumerate(message["content"]) if "cache_control" in b]
    return marks


# --- answers ------------------------------------------------------------------------------------------


def test_text_turn_maps_usage_and_model(fake: FakeAnthropic, claude: Claude) -> None:
    usage = Usage(
        input_tokens=12,
        output_tokens=40,
        cache_creation_tokens=100,
        cache_read_tokens=900,
        reasoning_tokens=9,
    )
    fake.script(Reply(text="All green.", usage=usage))

    response = claude().complete(ask())

    assert response.message == Message(role="assistant", content=(TextBlock(text="All green."),))
    assert (response.stop_reason, response.provider, response.model) == ("end_turn", "anthropic", SPEC.model)
    assert response.usage == Tokens(
        input_tokens=12, output_tokens=40, cache_write_tokens=100, cache_read_tokens=900, reasoning_tokens=9
    )
    assert (response.retries, response.stalls) == (0, 0) and response.latency_s > 0
    sent = fake.last.body
    assert sent["stream"] is True and sent["model"] == SPEC.model and sent["max_tokens"] == 8192
    assert sent["system"] == [{"type": "text", "text": "You are Archon.", "cache_control": EPHEMERAL}]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Fix the failing test.", "cache_control": EPHEMERAL}],
        }
    ]
    assert not {"thinking", "temperature", "top_p", "tools"} & set(sent)
    assert fake.violations == []


def test_tool_use_round_trip(fake: FakeAnthropic, claude: Claude) -> None:
    calls = [
        ToolCall("read_file", {"path": "a.py"}, id="toolu_1"),
        ToolCall("run", {"cmd": "pytest"}, id="toolu_2"),
    ]
    fake.script(Reply(text="Reading.", tool_calls=calls), Reply(text="Fixed."))
    provider = claude()

    first = provider.complete(ask(tools=TOOLS))
    assert first.stop_reason == "tool_use"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in first.message.tool_calls()] == [
        ("toolu_1", "read_file", {"path": "a.py"}),
        ("toolu_2", "run", {"cmd": "pytest"}),
    ]
    answers = (  # one user message per result, as a loop may produce them: the adapter merges them
        results(ToolResultBlock(call_id="toolu_1", content="x = 1")),
        results(ToolResultBlock(call_id="toolu_2", content="1 failed", is_error=True)),
    )
    final = provider.complete(ask(first.message, *answers, tools=TOOLS))

    assert final.message.text() == "Fixed." and final.stop_reason == "end_turn"
    sent = fake.last.body
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.py"}},
            {"type": "tool_use", "id": "toolu_2", "name": "run", "input": {"cmd": "pytest"}},
        ],
    }
    assert sent["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x = 1"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": "1 failed",
                "is_error": True,
                "cache_control": EPHEMERAL,
            },
        ],
    }
    assert [tool["name"] for tool in sent["tools"]] == ["read_file", "run"]
    # the last block, and the end of the previous request (its prefix is cached and read back)
    assert breakpoints(sent) == ["system.0", "tools.run", "messages.0.0", "messages.2.1"]
    assert fake.violations == []


def test_thinking_budget_is_sent_and_the_signed_block_comes_back_unchanged(
    fake: FakeAnthropic, claude: Claude
) -> None:
    fake.script(
        Reply(thinking="Look first.", signature="sig-1", tool_calls=[ToolCall("read_file", id="toolu_1")]),
        Reply(text="Done."),
    )
    provider = claude(BUDGET_SPEC)
    thinking = Reasoning(enabled=True, budget_tokens=2048)

    first = provider.complete(ask(tools=TOOLS, max_tokens=1024, reasoning=thinking))
    assert first.message.content[0] == ThinkingBlock(text="Look first.", signature="sig-1")
    assert fake.last.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert fake.last.body["max_tokens"] == 2048 + 1024  # the answer keeps its room
    result = results(ToolResultBlock(call_id="toolu_1", content="x = 1"))
    provider.complete(ask(first.message, result, tools=TOOLS, max_tokens=1024, reasoning=thinking))

    assert fake.last.body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Look first.",
        "signature": "sig-1",
    }
    assert fake.violations == []


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [(Reasoning(enabled=True), {"type": "adaptive"}), (Reasoning(enabled=False, budget_tokens=4096), None)],
)
def test_adaptive_thinking_and_no_thinking(
    fake: FakeAnthropic, claude: Claude, reasoning: Reasoning, expected: Any
) -> None:
    fake.script(Reply(text="ok"))

    claude().complete(ask(reasoning=reasoning))

    assert fake.last.body.get("thinking") == expected and fake.last.body["max_tokens"] == 8192


def test_wire_messages_keep_redacted_thinking_and_drop_what_the_api_refuses() -> None:
    assistant = Message(
        role="assistant",
        content=(
            ThinkingBlock(text="opaque==", redacted=True),
            ThinkingBlock(text="another provider's reasoning"),  # unsigned
            TextBlock(text=""),
            Call(id="toolu_1", name="run", arguments="{broken"),
        ),
    )
    answer = Message(
        role="user",
        content=(TextBlock(text="Also look at b.py."), ToolResultBlock(call_id="toolu_1", content="ok")),
    )

    wire = wire_messages(ask(assistant, answer))

    assert wire[1]["content"] == [
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}},
    ]
    assert wire[2]["content"] == [  # tool results first, as the API requires
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
        {"type": "text", "text": "Also look at b.py.", "cache_control": EPHEMERAL},
    ]


def test_malformed_tool_json_reaches_the_loop_as_written(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(
        Reply(tool_calls=[ToolCall("run", raw_arguments="{cmd: pytest}", id="toolu_1")]), Reply(text="ok")
    )
    provider = claude()

    first = provider.complete(ask(tools=TOOLS))
    (call,) = first.message.tool_calls()
    assert (call.name, call.arguments, first.retries) == ("run", "{cmd: pytest}", 0)
    error = results(ToolResultBlock(call_id="toolu_1", content="bad JSON", is_error=True))
    provider.complete(ask(first.message, error, tools=TOOLS))

    assert fake.last.body["messages"][1]["content"][0]["input"] == {}
    assert fake.violations == []


def test_tool_call_without_input_is_an_empty_object(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(Reply(tool_calls=[ToolCall("list_files")]))

    (call,) = claude().complete(ask(tools=TOOLS)).message.tool_calls()

    assert call.arguments == "{}"


# --- failures -----------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_and_counted(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(HttpError(429, retry_after=0.05), Reply(text="Second time lucky."))

    response = claude().complete(ask())

    assert response.message.text() == "Second time lucky."
    assert (response.retries, response.stalls) == (1, 0)
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


def test_overloaded_past_the_retries_is_a_provider_error(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(*[HttpError(529, retry_after=0.01)] * 3, Reply(text="never"))

    with pytest.raises(ProviderError) as caught:
        claude(max_retries=2).complete(ask())

    assert (caught.value.kind, caught.value.retries) == ("overloaded", 2)
    assert len(fake.requests) == 3 and fake.pending == 1


def test_a_stream_that_stalls_midway_is_restarted(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(Reply(text="partial answer", hang=5, hang_after_events=3), Reply(text="Whole answer."))

    response = claude(stall_timeout_s=STALL).complete(ask())

    assert response.message.text() == "Whole answer."
    assert (response.retries, response.stalls, len(fake.requests)) == (1, 1, 2)


def test_silence_before_the_headers_is_a_stall_the_sdk_retries(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(Reply(text="too late", hang=5), Reply(text="On time."))

    response = claude(stall_timeout_s=STALL).complete(ask())

    assert (response.message.text(), response.retries, response.stalls) == ("On time.", 1, 1)
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


def test_stalls_past_the_retries_fail_as_stall(fake: FakeAnthropic, claude: Claude) -> None:
    stalled = Reply(text="partial answer", hang=5, hang_after_events=3)
    fake.script(stalled, stalled, Reply(text="never"))

    with pytest.raises(ProviderError) as caught:
        claude(stall_timeout_s=STALL, max_retries=1).complete(ask())

    assert (caught.value.kind, caught.value.retries, caught.value.stalls) == ("stall", 1, 2)


@pytest.mark.parametrize("drop", [Drop(), Drop(after_events=3)], ids=["before-headers", "mid-stream"])
def test_a_dropped_connection_is_retried(fake: FakeAnthropic, claude: Claude, drop: Drop) -> None:
    fake.script(drop, Reply(text="Back."))

    response = claude().complete(ask())

    assert (response.message.text(), response.retries, response.stalls) == ("Back.", 1, 0)
    assert len(fake.requests) == 2


def test_the_wall_clock_bounds_the_call(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(Reply(text="slow", hang=5, hang_after_events=3), Reply(text="never"))

    with pytest.raises(ProviderError, match="wall clock") as caught:
        claude(timeout_s=0.4).complete(ask())

    assert caught.value.kind == "timeout" and len(fake.requests) == 1


@pytest.mark.parametrize(("status", "kind"), [(400, "bad_request"), (401, "auth")])
def test_client_errors_fail_at_once_without_the_key(
    fake: FakeAnthropic, claude: Claude, status: int, kind: str
) -> None:
    fake.script(HttpError(status, f"rejected key {KEY}"), Reply(text="never"))

    with pytest.raises(ProviderError) as caught:
        claude().complete(ask())

    assert (caught.value.kind, caught.value.retries, len(fake.requests)) == (kind, 0, 1)
    assert KEY not in str(caught.value) and "rejected key ***" in str(caught.value)


def test_no_sdk_retry_starts_after_the_wall_clock(fake: FakeAnthropic, claude: Claude) -> None:
    fake.script(HttpError(429, retry_after=0.5), Reply(text="never"))

    with pytest.raises(ProviderError, match="wall clock") as caught:
        claude(timeout_s=0.3).complete(ask())

    assert (caught.value.kind, caught.value.retries, len(fake.requests)) == ("timeout", 1, 1)


def test_a_model_of_adaptive_thinking_only_never_gets_a_budget(fake: FakeAnthropic, claude: Claude) -> None:
    """Claude 4.7 and the 5 family answer `budget_tokens` with a 400: a workflow's budget becomes
    adaptive thinking there (the bundled Claude aliases are such models)."""
    assert SPEC.thinking == "adaptive"
    fake.script(Reply(text="ok"))

    claude().complete(ask(max_tokens=1024, reasoning=Reasoning(enabled=True, budget_tokens=8000)))

    assert fake.last.body["thinking"] == {"type": "adaptive"} and fake.last.body["max_tokens"] == 1024
    assert fake.violations == []


def test_the_fake_refuses_the_budget_form_where_the_api_does(fake: FakeAnthropic) -> None:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0)
    fake.script(Reply(text="never sent"))
    with pytest.raises(anthropic.BadRequestError, match=r"thinking\.type\.enabled"):
        client.messages.create(
            model="claude-opus-5-5",
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "hi"}],
        )
