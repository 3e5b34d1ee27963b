"""The fake Anthropic API's prompt cache (`FakeAnthropic(cache=True)`) and the adapter's breakpoints."""

from __future__ import annotations

import anthropic

from bot.fakes.anthropic import FakeAnthropic, PromptCache, Reply
from bot.providers.anthropic import AnthropicProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import Message, ModelRequest, TextBlock, ToolCall, ToolResultBlock

EPHEMERAL = {"type": "ephemeral"}
LONG = "The system prompt, long enough to cache. " * 200  # ~2,000 tokens at 4 characters a token


def body(*texts: str, mark: bool = True, model: str = "claude-sonnet-5-5") -> dict:
    blocks = [{"type": "text", "text": text} for text in texts]
    if mark:
        blocks[-1]["cache_control"] = EPHEMERAL
    return {"model": model, "messages": [{"role": "user", "content": blocks}]}


def test_a_breakpoint_writes_its_prefix_and_the_next_request_reads_it() -> None:
    cache = PromptCache()
    read, written, uncached = cache.serve(body(LONG))
    assert read == 0 and written > 1024 and uncached == 0
    again = cache.serve(body(LONG))
    assert again == (written, 0, 0)
    longer = cache.serve(body(LONG, "and a question"))  # the old prefix is within the lookback
    assert longer[0] == written and longer[1] > 0


def test_a_short_prefix_or_no_breakpoint_is_not_cached() -> None:
    cache = PromptCache()
    assert cache.serve(body("short")) == (0, 0, cache.serve(body("short"))[2])
    assert cache.serve(body(LONG, mark=False))[:2] == (0, 0)
    assert cache.entries == {}


def test_the_cache_is_per_model_and_changes_before_the_breakpoint_miss() -> None:
    cache = PromptCache()
    cache.serve(body(LONG))
    assert cache.serve(body(LONG, model="claude-opus-5-5"))[0] == 0
    assert cache.serve(body("changed " + LONG))[0] == 0


def test_the_lookback_stops_20_blocks_before_a_breakpoint() -> None:
    cache = PromptCache()
    cache.serve(body(LONG))
    far = body(LONG, *[f"block {i}" for i in range(25)])
    assert cache.serve(far)[0] == 0  # the cached prefix ends 25 blocks back
    near = body(LONG, *[f"block {i}" for i in range(5)])
    assert cache.serve(near)[0] > 0


def test_a_tool_loop_reads_its_previous_request_even_after_many_parallel_calls() -> None:
    """25 tool results in one turn put the previous end past the 20-block lookback from the last block;
    the adapter's breakpoint on the previous request's end still finds it."""
    calls = tuple(ToolCall(id=f"toolu_{i}", name="read_file", arguments="{}") for i in range(25))
    first = (Message(role="user", content=(TextBlock(text="Read them all."),)),)
    second = (
        *first,
        Message(role="assistant", content=calls),
        Message(role="user", content=tuple(ToolResultBlock(call_id=c.id, content="x = 1") for c in calls)),
    )
    with FakeAnthropic(cache=True) as fake:
        provider = AnthropicProvider(DEFAULT_MODELS["sonnet"], api_key="k", base_url=fake.base_url)
        fake.script(Reply(text="a"), Reply(text="b"))
        one = provider.complete(ModelRequest(system=LONG, messages=first)).usage
        two = provider.complete(ModelRequest(system=LONG, messages=second)).usage
        assert fake.violations == []
    assert one.cache_read_tokens == 0 and one.cache_write_tokens > 1024
    assert two.cache_read_tokens == one.cache_write_tokens and two.input_tokens == 0
    assert two.cache_write_tokens > 0


def test_usage_reaches_the_sdk_in_the_api_fields() -> None:
    with FakeAnthropic(cache=True) as fake:
        client = anthropic.Anthropic(api_key="k", base_url=fake.base_url)
        fake.script(Reply(text="a"), Reply(text="b"))
        request = {"max_tokens": 10, **body(LONG)}
        client.messages.create(**request)
        usage = client.messages.create(**request).usage
    assert usage.cache_read_input_tokens > 1024 and usage.cache_creation_input_tokens == 0
