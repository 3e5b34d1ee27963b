"""`OpenAICompatProvider` through the real `openai` SDK against the shared fake, OpenAI and Moonshot modes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from bot.fakes.openai_compat import Drop, FakeOpenAI, HttpError, Reply, ToolCall, Usage
from bot.providers.openai_compat import OpenAICompatProvider, _usage
from bot.providers.registry import ModelSpec, Provider
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
from bot.providers.types import ToolCall as NeutralToolCall
from bot.providers.types import Usage as NeutralUsage

KEY = "sk-test-0123456789abcdef"
KIMI = "kimi-k2.6"
GPT = "gpt-5"
# Normal answers must never trip the stall timer, even on a loaded machine; hang tests hang for 5 s.
FAST = CallLimits(timeout_s=10, stall_timeout_s=2.0, max_retries=2)
READ = ToolSpec(
    name="read_file",
    description="Read a file.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}},
)
Connect = Callable[..., OpenAICompatProvider]
KIMI_FIXED = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty")


@pytest.fixture(params=["openai", "moonshot"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(moonshot=request.param == "moonshot") as server:
        yield server


@pytest.fixture
def kimi_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(moonshot=True) as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Connect]:
    """`connect(fake, limits)`: a provider for the fake's mode; its connection pool is closed afterwards."""
    opened: list[OpenAICompatProvider] = []

    def make(fake: FakeOpenAI, limits: CallLimits = FAST) -> OpenAICompatProvider:
        kind, model = (Provider.MOONSHOT, KIMI) if fake.moonshot else (Provider.OPENAI, GPT)
        spec = ModelSpec(provider=kind, model=model)
        opened.append(OpenAICompatProvider(spec, api_key=KEY, base_url=fake.base_url, limits=limits))
        return opened[-1]

    yield make
    for provider in opened:
        provider.close()


def user(text: str = "Fix the failing test.") -> Message:
    return Message(role="user", content=(TextBlock(text=text),))


def ask(*messages: Message, thinking: bool = False) -> ModelRequest:
    return ModelRequest(
        system="You are Archon.",
        messages=messages or (user(),),
        tools=(READ,),
        max_tokens=4096,
        reasoning=Reasoning(enabled=thinking),
    )


# --- answers -------------------------------------------------------------------------------------------


def test_text_turn(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(Reply(text="All green."))
    model = connect(fake)

    response = model.complete(ask())

    assert response.message.text() == "All green." and response.stop_reason == "end_turn"
    assert (response.provider, response.model) == (model.name, model.model)
    assert (response.retries, response.stalls) == (0, 0) and response.latency_s > 0
    body = fake.last.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "You are Archon."}
    assert body["tools"] == [READ.to_openai()]
    assert body[("max_tokens" if fake.moonshot else "max_completion_tokens")] == 4096
    assert fake.violations == []


def test_tool_call_round_trip(fake: FakeOpenAI, connect: Connect) -> None:
    arguments = '{"path":  "a.py"}'  # odd spacing: the text must come back exactly as the model wrote it
    calls = [ToolCall("read_file", raw_arguments=arguments), ToolCall("read_file", {"path": "b.py"})]
    fake.script(Reply(text="Reading both.", tool_calls=calls), Reply(text="Done."))
    model = connect(fake)

    first = model.complete(ask())
    assert first.stop_reason == "tool_use" and first.message.text() == "Reading both."
    one, two = first.message.tool_calls()
    assert (one.name, one.arguments) == ("read_file", arguments)
    assert json.loads(two.arguments) == {"path": "b.py"} and one.id != two.id

    results = (
        ToolResultBlock(call_id=one.id, content="x = 1"),
        ToolResultBlock(call_id=two.id, content="no such file", is_error=True),
    )
    second = model.complete(ask(user(), first.message, Message(role="user", content=results)))

    assert second.message.text() == "Done."
    _, _, assistant, answer_one, answer_two = fake.last.body["messages"]
    assert assistant["content"] == "Reading both."
    assert [call["function"]["arguments"] for call in assistant["tool_calls"]] == [arguments, two.arguments]
    assert assistant["tool_calls"][0] == {
        "id": one.id,
        "type": "function",
        "function": {"name": "read_file", "arguments": arguments},
    }
    assert answer_one == {"role": "tool", "tool_call_id": one.id, "content": "x = 1"}
    assert answer_two == {"role": "tool", "tool_call_id": two.id, "content": "ERROR: no such file"}
    assert fake.violations == []


def test_usage_with_cached_and_reasoning_tokens(fake: FakeOpenAI, connect: Connect) -> None:
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=120)
    fake.script(Reply(text="ok", usage=usage))

    response = connect(fake).complete(ask())

    # prompt_tokens 1200 include the 1000 cached: 200 uncached; the 120 reasoning tokens are inside the 300
    assert response.usage == NeutralUsage(
        input_tokens=200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=120
    )


def test_usage_reads_moonshots_top_level_cached_tokens() -> None:
    raw = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70, "cached_tokens": 32}

    assert _usage(raw) == NeutralUsage(input_tokens=18, output_tokens=20, cache_read_tokens=32)
    assert _usage(None) == NeutralUsage()


def test_malformed_tool_arguments_pass_through_raw(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(Reply(tool_calls=[ToolCall("run", raw_arguments='{"cmd": "pytest')]))

    response = connect(fake).complete(ask())

    (call,) = response.message.tool_calls()
    assert (call.name, call.arguments) == ("run", '{"cmd": "pytest') and response.stop_reason == "tool_use"


def test_length_and_content_filter_stop_reasons(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(Reply(text="cut", stop_reason="length"), Reply(text="no", stop_reason="content_filter"))
    model = connect(fake)

    assert [model.complete(ask()).stop_reason for _ in range(2)] == ["max_tokens", "refusal"]


# --- Moonshot -------------------------------------------------------------------------------------------


def test_kimi_reasoning_content_round_trip(kimi_fake: FakeOpenAI, connect: Connect) -> None:
    kimi_fake.script(
        Reply(thinking="Need the file.", tool_calls=[ToolCall("read_file", {"path": "a.py"})]),
        Reply(text="Done."),
    )
    model = connect(kimi_fake)

    first = model.complete(ask(thinking=True))
    thought, call = first.message.content
    assert thought == ThinkingBlock(text="Need the file.") and isinstance(call, NeutralToolCall)
    assert call.id == "functions.read_file:0"
    result = Message(role="user", content=(ToolResultBlock(call_id=call.id, content="x = 1"),))
    second = model.complete(ask(user(), first.message, result, thinking=True))

    assert second.message.text() == "Done."
    assistant = kimi_fake.last.body["messages"][2]
    assert assistant["reasoning_content"] == "Need the file." and assistant["content"] == ""
    assert kimi_fake.last.body["thinking"] == {"type": "enabled"}
    assert kimi_fake.violations == []


def test_kimi_tool_turn_without_kept_reasoning_still_carries_the_field(
    kimi_fake: FakeOpenAI, connect: Connect
) -> None:
    """History from a thinking-off turn (or another model) has no reasoning: the field is filled in."""
    kimi_fake.script(Reply(text="Done."))
    call = NeutralToolCall(id="functions.read_file:0", name="read_file", arguments='{"path": "a.py"}')
    history = (
        user(),
        Message(role="assistant", content=(call,)),
        Message(role="user", content=(ToolResultBlock(call_id=call.id, content="x = 1"),)),
    )

    connect(kimi_fake).complete(ask(*history, thinking=True))

    assert kimi_fake.last.body["messages"][2]["reasoning_content"] == " "
    assert kimi_fake.violations == []


def test_kimi_thinking_disabled_via_extra_body(kimi_fake: FakeOpenAI, connect: Connect) -> None:
    kimi_fake.script(Reply(text="ok"))

    connect(kimi_fake).complete(ask())

    assert kimi_fake.last.body["thinking"] == {"type": "disabled"} and kimi_fake.violations == []


@pytest.mark.parametrize("thinking", [True, False])
def test_kimi_gets_no_sampling_parameters(kimi_fake: FakeOpenAI, connect: Connect, thinking: bool) -> None:
    kimi_fake.script(Reply(text="ok"))

    connect(kimi_fake).complete(ask(thinking=thinking))

    assert not set(KIMI_FIXED) & set(kimi_fake.last.body) and kimi_fake.violations == []
    assert "reasoning_effort" not in kimi_fake.last.body


def test_kimi_overloaded_is_its_own_kind(kimi_fake: FakeOpenAI, connect: Connect) -> None:
    kimi_fake.script(HttpError(429, "The engine is currently overloaded", type="engine_overloaded_error"))

    with pytest.raises(ProviderError) as caught:
        connect(kimi_fake, CallLimits(stall_timeout_s=1, max_retries=0)).complete(ask())

    assert caught.value.kind == "overloaded" and "engine_overloaded_error" in str(caught.value)


# --- OpenAI dialect ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "thinking", "effort"),
    [("gpt-5", True, "medium"), ("o3-mini", True, "medium"), ("gpt-5", False, None), ("gpt-4.1", True, None)],
)
def test_openai_reasoning_effort_only_for_models_that_take_it(
    model: str, thinking: bool, effort: str | None
) -> None:
    spec = ModelSpec(provider=Provider.OPENAI, model=model)
    body = OpenAICompatProvider(spec, api_key=KEY, base_url=None).request_body(ask(thinking=thinking))

    assert body.get("reasoning_effort") == effort and "extra_body" not in body


def test_openai_itself_is_not_sent_reasoning_content_but_other_servers_are() -> None:
    thought = Message(role="assistant", content=(ThinkingBlock(text="hm"), TextBlock(text="Hi.")))
    request = ask(user(), thought, user("Again."))
    spec = ModelSpec(provider=Provider.OPENAI, model="gpt-5")

    official = OpenAICompatProvider(spec, api_key=KEY, base_url=None)
    local = OpenAICompatProvider(spec, api_key=KEY, base_url="http://localhost:8000/v1")

    assert official.wire_messages(request)[2] == {"role": "assistant", "content": "Hi."}
    assert local.wire_messages(request)[2] == {
        "role": "assistant",
        "content": "Hi.",
        "reasoning_content": "hm",
    }


def test_openrouter_uses_max_tokens_and_its_default_url() -> None:
    spec = ModelSpec(provider=Provider.OPENROUTER, model="moonshotai/kimi-k2.6")
    model = OpenAICompatProvider(spec, api_key=KEY, base_url=None)

    assert (model.name, model.moonshot) == ("openrouter", False)
    assert model.request_body(ask())["max_tokens"] == 4096
    assert str(model._client.base_url) == "https://openrouter.ai/api/v1/"


# --- reliability ----------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_and_counted(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(HttpError(429, retry_after=0.05), Reply(text="Second time lucky."))

    response = connect(fake).complete(ask())

    assert response.message.text() == "Second time lucky." and response.retries == 1
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


def test_repeated_500_is_a_server_error_after_the_retries(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(*[HttpError(500, retry_after=0.01)] * 3)

    with pytest.raises(ProviderError) as caught:
        connect(fake).complete(ask())

    assert (caught.value.kind, caught.value.retries, caught.value.stalls) == ("server", 2, 0)
    assert len(fake.requests) == 3 and "HTTP 500" in str(caught.value)


def test_400_is_a_bad_request_without_retries(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(HttpError(400, "Invalid value for 'tools'."))

    with pytest.raises(ProviderError) as caught:
        connect(fake).complete(ask())

    assert (caught.value.kind, caught.value.retries) == ("bad_request", 0) and len(fake.requests) == 1
    assert "Invalid value for 'tools'." in str(caught.value)


def test_the_api_key_never_appears_in_an_error(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(HttpError(401, f"Incorrect API key provided: {KEY}."))

    with pytest.raises(ProviderError) as caught:
        connect(fake).complete(ask())

    assert caught.value.kind == "auth" and KEY not in str(caught.value) and "[redacted]" in str(caught.value)


def test_mid_stream_stall_restarts_the_call(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(Reply(text="partial answer", hang=5, hang_after_events=2), Reply(text="Second try."))

    response = connect(fake).complete(ask())

    assert response.message.text() == "Second try."  # nothing of the stalled attempt leaks in
    assert (response.stalls, response.retries) == (1, 1) and len(fake.requests) == 2


def test_stalls_past_the_retries_are_a_stall_error(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(*[Reply(text="partial answer", hang=5, hang_after_events=2)] * 2)
    limits = CallLimits(timeout_s=10, stall_timeout_s=0.3, max_retries=1)

    with pytest.raises(ProviderError) as caught:
        connect(fake, limits).complete(ask())

    assert (caught.value.kind, caught.value.stalls, caught.value.retries) == ("stall", 2, 1)


def test_silence_before_the_stream_is_a_timeout(fake: FakeOpenAI, connect: Connect) -> None:
    fake.script(Reply(text="too late", hang=5))
    limits = CallLimits(timeout_s=10, stall_timeout_s=0.3, max_retries=0)

    with pytest.raises(ProviderError) as caught:
        connect(fake, limits).complete(ask())

    assert (caught.value.kind, caught.value.retries) == ("timeout", 0)


def test_the_wall_clock_bounds_the_whole_call(fake: FakeOpenAI, connect: Connect) -> None:
    # Each attempt stalls; the retries would go on for 6 × 60 s, so ending at all proves the wall clock
    # cut them off. Generous margins: a loaded machine may stall more or fewer times before the deadline.
    fake.script(*[Reply(text="partial answer", hang=60, hang_after_events=2)] * 6)
    limits = CallLimits(timeout_s=3, stall_timeout_s=1, max_retries=5)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        connect(fake, limits).complete(ask())

    assert caught.value.kind == "timeout" and caught.value.stalls >= 1
    assert time.monotonic() - started < 60  # far below one hang: the deadline, not the server, ended it


@pytest.mark.parametrize("after_events", [0, 2], ids=["before-the-stream", "mid-stream"])
def test_dropped_connection_is_retried(fake: FakeOpenAI, connect: Connect, after_events: int) -> None:
    fake.script(Drop(after_events=after_events), Reply(text="Back."))

    response = connect(fake).complete(ask())

    assert response.message.text() == "Back." and (response.retries, response.stalls) == (1, 0)
    # before the stream the SDK retries (its header counts); mid-stream the adapter restarts the call
    expected = ["0", "1"] if after_events == 0 else ["0", "0"]
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == expected


def test_dropped_connections_past_the_retries_are_a_connection_error(
    fake: FakeOpenAI, connect: Connect
) -> None:
    fake.script(*[Drop(after_events=2)] * 3)

    with pytest.raises(ProviderError) as caught:
        connect(fake).complete(ask())

    assert (caught.value.kind, caught.value.retries) == ("connection", 2)


# --- without streaming -----------------------------------------------------------------------------------


def test_whole_completions_give_the_same_answer(fake: FakeOpenAI) -> None:
    """`stream=False`, for hosts whose streaming is broken: same blocks, usage and ids, no stream options."""
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=120)
    fake.script(Reply(text="Reading.", tool_calls=[ToolCall("read_file", {"path": "a.py"})], usage=usage))
    kind, model_id = (Provider.MOONSHOT, KIMI) if fake.moonshot else (Provider.OPENAI, GPT)
    model = OpenAICompatProvider(
        ModelSpec(provider=kind, model=model_id),
        api_key=KEY,
        base_url=fake.base_url,
        limits=FAST,
        stream=False,
    )
    try:
        response = model.complete(ask())
    finally:
        model.close()

    (call,) = response.message.tool_calls()
    assert response.message.text() == "Reading." and response.stop_reason == "tool_use"
    assert json.loads(call.arguments) == {"path": "a.py"} and response.recoveries == ()
    assert response.usage == NeutralUsage(
        input_tokens=200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=120
    )
    assert fake.last.body["stream"] is False and "stream_options" not in fake.last.body
