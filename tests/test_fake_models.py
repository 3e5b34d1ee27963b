"""The model fakes, exercised through the official SDKs exactly as the provider adapters will use them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from bot.fakes.anthropic import Drop, FakeAnthropic, HttpError, Reply, ToolCall, Usage
from bot.fakes.openai_compat import FakeOpenAI, Sloppy

USER = [{"role": "user", "content": "Fix the failing test."}]
CLAUDE = "claude-sonnet-4-6"  # 4-5 warns: deprecated in anthropic 2.14
KIMI = "kimi-k2.6"
FAST = 0.5  # client timeout for hang tests: well below the fake's hang, so nothing waits long


@pytest.fixture
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def kimi_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(moonshot=True) as fake:
        yield fake


def claude(fake: FakeAnthropic, *, retries: int = 0, timeout: float = 5.0) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url=fake.base_url, max_retries=retries, timeout=timeout)


def oai(fake: FakeOpenAI, *, retries: int = 0, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=fake.base_url, max_retries=retries, timeout=timeout)


def ask_claude(client: anthropic.Anthropic, messages: list[dict[str, Any]] = USER, **kwargs: Any) -> Any:
    return client.messages.create(model=CLAUDE, max_tokens=2048, messages=messages, **kwargs)


# --- Anthropic: answers ------------------------------------------------------------------------------


def test_anthropic_text_turn_with_usage(claude_fake: FakeAnthropic) -> None:
    usage = Usage(input_tokens=12, output_tokens=7, cache_creation_tokens=100, cache_read_tokens=900)
    claude_fake.script(Reply(text="All green.", usage=usage))

    message = ask_claude(claude(claude_fake))

    assert message.id.startswith("msg_") and message.model == CLAUDE and message.role == "assistant"
    assert [block.text for block in message.content] == ["All green."]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (100, 900)
    sent = claude_fake.last
    assert sent.headers["authorization"] == "Bearer test"  # anthropic 2.x sends the key as a bearer token
    assert sent.headers["anthropic-version"] and sent.body["messages"] == USER
    assert claude_fake.violations == []


def test_anthropic_tool_use_turn(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(
        Reply(text="Reading.", tool_calls=[ToolCall("read_file", {"path": "a.py"}, id="toolu_1")])
    )

    message = ask_claude(
        claude(claude_fake), tools=[{"name": "read_file", "input_schema": {"type": "object"}}]
    )

    tool = message.content[1]
    assert (tool.type, tool.id, tool.name, tool.input) == (
        "tool_use",
        "toolu_1",
        "read_file",
        {"path": "a.py"},
    )
    assert message.stop_reason == "tool_use"


def test_anthropic_stream_with_thinking_and_text(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(
        Reply(
            thinking="The assert is off by one.",
            signature="sig-1",
            text="Fixed the bound.",
            usage=Usage(input_tokens=30, output_tokens=40, cache_read_tokens=25, reasoning_tokens=20),
        )
    )

    with claude(claude_fake).messages.stream(
        model=CLAUDE, max_tokens=4096, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()

    assert text == "Fixed the bound."
    thinking, answer = message.content
    assert (thinking.type, thinking.thinking, thinking.signature) == (
        "thinking",
        "The assert is off by one.",
        "sig-1",
    )
    assert answer.text == "Fixed the bound."
    assert (
        message.usage.input_tokens,
        message.usage.output_tokens,
        message.usage.cache_read_input_tokens,
    ) == (30, 40, 25)
    assert message.usage.output_tokens_details.thinking_tokens == 20
    assert claude_fake.last.stream and claude_fake.last.headers["x-stainless-helper-method"] == "stream"


def test_anthropic_stream_tool_use(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(Reply(tool_calls=[ToolCall("run", {"cmd": "pytest -q", "timeout": 60})]))

    with claude(claude_fake).messages.stream(model=CLAUDE, max_tokens=1024, messages=USER) as stream:
        message = stream.get_final_message()

    (tool,) = message.content
    assert tool.id.startswith("toolu_") and tool.input == {"cmd": "pytest -q", "timeout": 60}
    assert message.stop_reason == "tool_use"


def test_anthropic_stream_broken_tool_json_is_the_sdks_value_error(claude_fake: FakeAnthropic) -> None:
    """The SDK parses `partial_json` as it arrives: text that cannot be a JSON prefix raises ValueError."""
    claude_fake.script(Reply(tool_calls=[ToolCall("run", raw_arguments="{cmd: pytest}")]))

    with (
        pytest.raises(ValueError, match="Unable to parse tool parameter JSON"),
        claude(claude_fake).messages.stream(model=CLAUDE, max_tokens=1024, messages=USER) as stream,
    ):
        stream.get_final_message()


def test_anthropic_tool_loop_with_thinking_and_cache_breakpoints_is_valid(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(
        Reply(thinking="Look first.", tool_calls=[ToolCall("read_file", {"path": "a.py"})]),
        Reply(text="Done."),
    )
    client = claude(claude_fake)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    system = [{"type": "text", "text": "You are Archon.", "cache_control": {"type": "ephemeral"}}]
    first = ask_claude(client, system=system, thinking=thinking)
    tool_use = first.content[1]
    follow_up = [
        *USER,
        {"role": "assistant", "content": [block.to_dict() for block in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_use.id,
                    "content": "x = 1",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]

    assert ask_claude(client, follow_up, system=system, thinking=thinking).content[0].text == "Done."
    sent = claude_fake.last.body
    assert sent["messages"][1]["content"][0]["signature"] == first.content[0].signature
    assert sent["messages"][2]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert claude_fake.violations == []


# --- Anthropic: the contract -------------------------------------------------------------------------

CACHED = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
ORPHAN = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "?"}]}]
UNANSWERED = [
    *USER,
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
    {"role": "user", "content": "and?"},
]
UNTHOUGHT = [
    *USER,
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"messages": ORPHAN}, "unexpected `tool_use_id` found in `tool_result` blocks: toolu_nope"),
        ({"messages": UNANSWERED}, "`tool_use` ids were found without `tool_result` blocks"),
        ({"messages": [*USER, *USER]}, 'roles must alternate between "user" and "assistant"'),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 'first message must use the "user" role'),
        (
            {"system": [CACHED] * 3, "messages": [{"role": "user", "content": [CACHED] * 2}]},
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "`max_tokens` must be greater than"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "extra_body": {"temperature": 0.2}},
            "`temperature` may only",
        ),  # anthropic 2.14's create() has no sampling parameters at all
        ({"system": [CACHED] * 4, "cache_control": {"type": "ephemeral"}}, "Found 5."),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": UNTHOUGHT},
            "must start with a thinking block",
        ),
    ],
)
def test_anthropic_contract_violations_get_400(
    claude_fake: FakeAnthropic, kwargs: dict, expected: str
) -> None:
    claude_fake.script(Reply(text="never sent"))
    request = {"messages": USER, **kwargs}

    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_claude(claude(claude_fake), **request)

    assert caught.value.type == "invalid_request_error" and expected in caught.value.api_message
    assert len(claude_fake.violations) == 1 and expected in claude_fake.violations[0]
    assert claude_fake.pending == 1  # a rejected request does not use up the script


def test_anthropic_needs_a_key_and_a_version(claude_fake: FakeAnthropic) -> None:
    body = json.dumps({"model": CLAUDE, "max_tokens": 10, "messages": USER}).encode()

    def post(headers: dict[str, str]) -> tuple[int, dict]:
        request = urllib.request.Request(f"{claude_fake.base_url}/v1/messages", body, headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        return caught.value.code, json.loads(caught.value.read())

    assert post({"content-type": "application/json"})[0] == 401
    status, error = post({"content-type": "application/json", "x-api-key": "k"})
    assert status == 400 and error["type"] == "error" and "anthropic-version" in error["error"]["message"]
    assert len(claude_fake.violations) == 2


# --- Anthropic: failures -----------------------------------------------------------------------------


def test_anthropic_429_with_retry_after_is_retried_by_the_sdk(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(HttpError(429, retry_after=0.05), Reply(text="Second time lucky."))

    message = ask_claude(claude(claude_fake, retries=2))

    assert message.content[0].text == "Second time lucky."
    assert [request.headers["x-stainless-retry-count"] for request in claude_fake.requests] == ["0", "1"]


def test_anthropic_529_is_the_sdks_overloaded_error(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(HttpError(529))

    with pytest.raises(anthropic.OverloadedError) as caught:
        ask_claude(claude(claude_fake))

    assert isinstance(caught.value, anthropic.InternalServerError)
    assert (caught.value.status_code, caught.value.type, caught.value.api_message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )
    assert caught.value.request_id.startswith("req_")


def test_anthropic_hang_beyond_the_client_timeout(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(Reply(text="too late", hang=5))

    with pytest.raises(anthropic.APITimeoutError):
        ask_claude(claude(claude_fake, timeout=FAST))


def test_anthropic_stream_stall_surfaces_as_a_raw_httpx2_timeout(claude_fake: FakeAnthropic) -> None:
    """Mid-stream, anthropic 2.14 does not wrap transport errors: adapters must catch httpx2's too."""
    claude_fake.script(Reply(text="partial answer", hang=5, hang_after_events=3))

    with (
        pytest.raises(httpx2.ReadTimeout),
        claude(claude_fake, timeout=FAST).messages.stream(
            model=CLAUDE, max_tokens=1024, messages=USER
        ) as stream,
    ):
        stream.get_final_message()


def test_anthropic_dropped_connection_is_retried(claude_fake: FakeAnthropic) -> None:
    claude_fake.script(Drop(), Reply(text="Back."))

    assert ask_claude(claude(claude_fake, retries=1)).content[0].text == "Back."
    assert len(claude_fake.requests) == 2


def test_anthropic_unscripted_request_fails_once_and_loudly(claude_fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.InternalServerError, match="unscripted request"):
        ask_claude(claude(claude_fake, retries=2))

    assert len(claude_fake.requests) == 1  # `x-should-retry: false` stops the SDK's retries
    assert claude_fake.violations == ["POST /v1/messages: unscripted request"]


# --- OpenAI: answers ---------------------------------------------------------------------------------


def test_openai_text_turn_with_usage(openai_fake: FakeOpenAI) -> None:
    usage = Usage(input_tokens=120, output_tokens=30, cache_read_tokens=100, reasoning_tokens=12)
    openai_fake.script(Reply(text="All green.", usage=usage))

    completion = oai(openai_fake).chat.completions.create(model="gpt-5", messages=USER)

    assert completion.id.startswith("chatcmpl-") and completion.model == "gpt-5"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        "All green.",
        "stop",
    )
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (120, 30, 150)
    assert completion.usage.prompt_tokens_details.cached_tokens == 100
    assert completion.usage.completion_tokens_details.reasoning_tokens == 12
    assert openai_fake.last.path == "/v1/chat/completions"
    assert openai_fake.last.headers["authorization"] == "Bearer test"


def test_openai_malformed_tool_arguments_pass_through(openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Reply(tool_calls=[ToolCall("run", raw_arguments='{"cmd": "pytest')]))

    completion = oai(openai_fake).chat.completions.create(model="gpt-5", messages=USER)

    (call,) = completion.choices[0].message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "run"
    assert call.function.arguments == '{"cmd": "pytest'
    assert completion.choices[0].finish_reason == "tool_calls"


def test_openai_stream_accumulates_text_tool_calls_and_usage(openai_fake: FakeOpenAI) -> None:
    calls = [ToolCall("read_file", {"path": "a.py"}), ToolCall("run", {"cmd": "pytest"})]
    openai_fake.script(
        Reply(text="Two things.", tool_calls=calls, usage=Usage(input_tokens=9, output_tokens=4))
    )

    stream = oai(openai_fake).chat.completions.create(
        model="gpt-5", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, tools, finish, usage = "", {}, None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for fragment in choice.delta.tool_calls or []:
                tool = tools.setdefault(
                    fragment.index, {"id": fragment.id, "name": fragment.function.name, "args": ""}
                )
                tool["args"] += fragment.function.arguments or ""

    assert text == "Two things." and finish == "tool_calls"
    assert [(tool["name"], json.loads(tool["args"])) for tool in tools.values()] == [
        ("read_file", {"path": "a.py"}),
        ("run", {"cmd": "pytest"}),
    ]
    assert all(tool["id"].startswith("call_") for tool in tools.values())
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 4)


def test_openai_tool_message_must_answer_a_call(openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Reply(text="never sent"))
    messages = [*USER, {"role": "tool", "tool_call_id": "call_nope", "content": "?"}]

    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding message"):
        oai(openai_fake).chat.completions.create(model="gpt-5", messages=messages)

    assert len(openai_fake.violations) == 1 and openai_fake.pending == 1


def test_openai_429_with_retry_after_is_retried_by_the_sdk(openai_fake: FakeOpenAI) -> None:
    openai_fake.script(HttpError(429, retry_after=0.05), Reply(text="ok"))

    completion = oai(openai_fake, retries=2).chat.completions.create(model="gpt-5", messages=USER)

    assert completion.choices[0].message.content == "ok" and len(openai_fake.requests) == 2


def test_openai_hangs_beyond_the_client_timeout(openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Reply(text="too late", hang=5), Reply(text="stalls", hang=5, hang_after_events=2))
    client = oai(openai_fake, timeout=FAST)

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-5", messages=USER)
    with pytest.raises(openai.APITimeoutError):  # openai wraps mid-stream timeouts, unlike anthropic
        list(client.chat.completions.create(model="gpt-5", messages=USER, stream=True))


def test_openai_unscripted_request(openai_fake: FakeOpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="unscripted request"):
        oai(openai_fake, retries=2).chat.completions.create(model="gpt-5", messages=USER)

    assert openai_fake.violations == ["POST /v1/chat/completions: unscripted request"]


# --- Moonshot (Kimi) ---------------------------------------------------------------------------------


def kimi_tool_turn(reasoning: str | None) -> list[dict[str, Any]]:
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "functions.read_file:0",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
            }
        ],
    }
    if reasoning is not None:
        assistant["reasoning_content"] = reasoning
    return [*USER, assistant, {"role": "tool", "tool_call_id": "functions.read_file:0", "content": "x = 1"}]


def test_kimi_reasoning_content_missing_is_400_and_present_is_ok(kimi_fake: FakeOpenAI) -> None:
    kimi_fake.script(Reply(text="Done."))
    client = oai(kimi_fake)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=KIMI, messages=kimi_tool_turn(None))
    assert caught.value.body == {
        "message": "thinking is enabled but reasoning_content is missing in assistant "
        "tool call message at index 1",
        "type": "invalid_request_error",
    }
    assert (
        client.chat.completions.create(model=KIMI, messages=kimi_tool_turn("Read it first."))
        .choices[0]
        .message.content
        == "Done."
    )
    assert len(kimi_fake.violations) == 1 and "reasoning_content is missing" in kimi_fake.violations[0]
    assert "temperature" not in kimi_fake.last.body


def test_kimi_thinking_disabled_needs_no_reasoning_content(kimi_fake: FakeOpenAI) -> None:
    kimi_fake.script(Reply(text="Done."))

    oai(kimi_fake).chat.completions.create(
        model=KIMI, messages=kimi_tool_turn(None), extra_body={"thinking": {"type": "disabled"}}
    )

    assert kimi_fake.violations == [] and kimi_fake.last.body["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"temperature": 0.3}, "invalid temperature: only 1 is allowed"),
        ({"temperature": 1.0, "extra_body": {"thinking": {"type": "disabled"}}}, "only 0.6 is allowed"),
        ({"top_p": 0.5}, "invalid top_p"),
        ({"presence_penalty": 0.5}, "invalid presence_penalty"),
        ({"frequency_penalty": 0.5}, "invalid frequency_penalty"),
        ({"n": 2}, "invalid n"),
    ],
)
def test_kimi_fixed_sampling_parameters(kimi_fake: FakeOpenAI, kwargs: dict, expected: str) -> None:
    with pytest.raises(openai.BadRequestError, match=expected):
        oai(kimi_fake).chat.completions.create(model=KIMI, messages=USER, **kwargs)

    assert len(kimi_fake.violations) == 1


def test_kimi_reasoning_round_trips_through_a_stream(kimi_fake: FakeOpenAI) -> None:
    kimi_fake.script(Reply(thinking="Need the file.", tool_calls=[ToolCall("read_file", {"path": "a.py"})]))

    with oai(kimi_fake).chat.completions.stream(model=KIMI, messages=USER) as stream:
        message = stream.get_final_completion().choices[0].message

    assert message.reasoning_content == "Need the file."  # an extra field: the SDK keeps it
    (call,) = message.tool_calls
    assert call.id == "functions.read_file:0" and json.loads(call.function.arguments) == {"path": "a.py"}


def test_kimi_stream_usage_sits_in_the_finishing_choice(kimi_fake: FakeOpenAI) -> None:
    kimi_fake.script(Reply(text="ok", usage=Usage(input_tokens=50, output_tokens=20, cache_read_tokens=32)))

    chunks = list(oai(kimi_fake).chat.completions.create(model=KIMI, messages=USER, stream=True))

    assert all(chunk.usage is None for chunk in chunks)  # no include_usage: nothing at the top level
    finishing = chunks[-1].choices[0]
    assert finishing.finish_reason == "stop"
    assert finishing.usage["prompt_tokens"] == 50 and finishing.usage["cached_tokens"] == 32


def test_kimi_errors_use_moonshots_body_shape(kimi_fake: FakeOpenAI) -> None:
    kimi_fake.script(HttpError(429, "Your account is rate limited.", retry_after=3))

    with pytest.raises(openai.RateLimitError) as caught:
        oai(kimi_fake).chat.completions.create(model=KIMI, messages=USER)

    assert caught.value.body == {
        "message": "Your account is rate limited.",
        "type": "rate_limit_reached_error",
    }
    assert caught.value.response.headers["retry-after"] == "3"


# --- OpenAI-compatible: sloppy mode (issue 14) -----------------------------------------------------------


def test_sloppy_leak_puts_kimi_markup_in_content_instead_of_tool_calls() -> None:
    with FakeOpenAI(moonshot=True, sloppy=Sloppy(leak_markup=1.0)) as fake:
        fake.script(Reply(text="Reading.", tool_calls=[ToolCall("read_file", {"path": "a.py"})]))
        completion = oai(fake).chat.completions.create(model=KIMI, messages=USER)

    (choice,) = completion.choices
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert choice.message.content == (
        "Reading.<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0"
        '<|tool_call_argument_begin|>{"path": "a.py"}<|tool_call_end|><|tool_calls_section_end|>'
    )
    assert fake.quirks == ["leak_markup"]


def test_sloppy_stream_mixes_whole_and_delta_arguments_and_drops_done() -> None:
    sloppy = Sloppy(mixed_chunks=1.0, drop_done=1.0)
    with FakeOpenAI(sloppy=sloppy) as fake:
        fake.script(Reply(tool_calls=[ToolCall("run", {"cmd": "pytest -q"})]))
        with oai(fake).chat.completions.with_streaming_response.create(
            model="gpt-5", messages=USER, stream=True
        ) as response:
            body = response.read().decode()

    data = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in data and json.loads(data[-1])["choices"][0]["finish_reason"] == "tool_calls"
    fragments = [
        call["function"].get("arguments") or ""
        for event in map(json.loads, data)
        for choice in event["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    assert "".join(fragments) != '{"cmd": "pytest -q"}' and '{"cmd": "pytest -q"}' in fragments
    assert fake.quirks == ["mixed_chunks", "drop_done"]


def test_sloppy_rates_replay_with_the_seed() -> None:
    def played(seed: int) -> list[str]:
        with FakeOpenAI(sloppy=Sloppy(leak_markup=0.5, drop_done=0.5, seed=seed)) as fake:
            fake.script(*[Reply(tool_calls=[ToolCall("run", {"cmd": "ls"})])] * 8)
            client = oai(fake)
            for _ in range(8):
                list(client.chat.completions.create(model="gpt-5", messages=USER, stream=True))
            return list(fake.quirks)

    first = played(3)
    assert first == played(3) and 0 < first.count("drop_done") < 8 and 0 < first.count("leak_markup") < 8
