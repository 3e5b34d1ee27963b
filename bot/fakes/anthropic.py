"""A fake Anthropic Messages API (`POST /v1/messages`), JSON and SSE, for the official `anthropic` SDK.

    with FakeAnthropic() as fake:
        fake.script(Reply(text="hi"), HttpError(529))
        client = anthropic.Anthropic(api_key="test", base_url=fake.base_url)

Wire format as the SDK (anthropic 2.14) parses it: `Message` with `usage.cache_creation_input_tokens` /
`cache_read_input_tokens`; the stream is `message_start`, `ping`, per block `content_block_start` /
`content_block_delta` (`text_delta`, `input_json_delta.partial_json`, `thinking_delta`,
`signature_delta`) / `content_block_stop`, then `message_delta` (stop reason, cumulative usage) and
`message_stop`. Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`; the SDK maps
529 to `OverloadedError`, a subclass of `InternalServerError`.

The contract checks and their messages follow what the API answers, as quoted in public bug reports:
tool_result pairing (anthropics/claude-code#13460, #7929), "A maximum of 4 blocks with cache_control may
be provided. Found 5." (continuedev/continue#6937), thinking `budget_tokens` ≥ 1024 and < `max_tokens`
(themaximalist/llm.js#30; the SDK's `ThinkingConfigEnabledParam` docstring), `max_tokens` must exceed
the budget unless interleaved thinking is on (Anthropic's extended-thinking docs), and the budget form
refused on the models that take adaptive thinking only (Claude 4.7 and the 5 family; Amazon Bedrock's
"Adaptive thinking" page quotes the 400). Strict role
alternation is stricter than today's API, which merges consecutive same-role turns: an adapter that
passes here is valid everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from bot.fakes._http import (
    Drop,
    FakeModelServer,
    HttpError,
    RecordedRequest,
    Reply,
    ToolCall,
    Usage,
    new_id,
    pieces,
    sse,
)

__all__ = ["Drop", "FakeAnthropic", "HttpError", "RecordedRequest", "Reply", "ToolCall", "Usage"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    429: "This request would exceed your organization's rate limit. Please try again later.",
    500: "Internal server error",
    529: "Overloaded",
}
MAX_CACHE_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024
INTERLEAVED_THINKING_BETA = "interleaved-thinking"


class FakeAnthropic(FakeModelServer):
    """The Messages API on a loopback port; `base_url` is the server root, the SDK adds `/v1/messages`.

    `cache=True` makes the input side of every answer's usage the fake's own count, prompt caching
    included (`PromptCache`), instead of the scripted `Usage` (whose output counts still apply).
    """

    endpoint = "/v1/messages"

    def __init__(self, *, cache: bool = False) -> None:
        super().__init__()
        self.cache = PromptCache() if cache else None

    def validate(self, request: RecordedRequest) -> HttpError | None:
        for check in CHECKS:
            error = check(request)
            if error is not None:
                return error
        return None

    def error_body(self, error: HttpError) -> dict[str, Any]:
        kind = error.type or ERROR_TYPES.get(error.status, "api_error")
        message = error.message or ERROR_MESSAGES.get(error.status, kind)
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": new_id("req_011C"),
        }

    def response_headers(self) -> dict[str, str]:
        return {"request-id": new_id("req_011C")}

    def message_body(self, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
        usage = self._counted(reply, request)
        return {
            **_message_head(request),
            "content": _blocks(reply),
            "stop_reason": _stop_reason(reply),
            "usage": _usage(usage),
        }

    def stream_events(self, reply: Reply, request: RecordedRequest) -> list[bytes]:
        usage = self._counted(reply, request)
        reply = Reply(**{**reply.__dict__, "usage": usage})
        start = {
            **_message_head(request),
            "content": [],
            "stop_reason": None,
            "usage": _usage(usage, 1),
        }
        events = [_event("message_start", message=start), _event("ping")]
        for index, (block, raw) in enumerate(_stream_blocks(reply)):
            events += _block_events(index, block, raw)
        delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
        events.append(_event("message_delta", delta=delta, usage=_usage(reply.usage)))
        events.append(_event("message_stop"))
        return events

    def _counted(self, reply: Reply, request: RecordedRequest) -> Usage:
        if self.cache is None:
            return reply.usage
        read, written, uncached = self.cache.serve(request.body)
        return Usage(
            input_tokens=uncached,
            output_tokens=reply.usage.output_tokens,
            cache_creation_tokens=written,
            cache_read_tokens=read,
            reasoning_tokens=reply.usage.reasoning_tokens,
        )


# --- prompt caching ---------------------------------------------------------------------------------

#: Blocks before a breakpoint the API searches for an earlier cached prefix.
CACHE_LOOKBACK_BLOCKS = 20
CHARS_PER_TOKEN = 4
#: The shortest prefix the API caches, by model (a shorter one is processed uncached, without an error).
MIN_CACHEABLE_TOKENS = (
    (re.compile(r"claude-(opus-4-5|haiku-4-5|opus-4-6)"), 4096),
    (re.compile(r"haiku-3"), 2048),
)
DEFAULT_MIN_CACHEABLE_TOKENS = 1024


def min_cacheable_tokens(model: str) -> int:
    return next(
        (tokens for pattern, tokens in MIN_CACHEABLE_TOKENS if pattern.search(model)),
        DEFAULT_MIN_CACHEABLE_TOKENS,
    )


def block_tokens(block: Any) -> int:
    """A stand-in tokenizer: a block's JSON (without its `cache_control`) at 4 characters a token."""
    return max(1, len(json.dumps(block_view(block), sort_keys=True)) // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class _Prefix:
    """The request's blocks in cache order, with a running hash and token count at each block's end."""

    hashes: list[str]
    tokens: list[int]
    breakpoints: list[int]


def _prefix(body: dict[str, Any]) -> _Prefix:
    blocks = list(body.get("tools") or [])
    system = body.get("system")
    blocks += system if isinstance(system, list) else ([{"type": "text", "text": system}] if system else [])
    for message in body["messages"]:
        content = message.get("content")
        blocks += _content(message) if isinstance(content, list) else [{"type": "text", "text": content}]
    running = hashlib.sha256(str(body.get("model")).encode())
    hashes, tokens, total = [], [], 0
    for block in blocks:
        running.update(json.dumps(block_view(block), sort_keys=True).encode())
        hashes.append(running.hexdigest())
        total += block_tokens(block)
        tokens.append(total)
    marked = [
        index for index, block in enumerate(blocks) if isinstance(block, dict) and block.get("cache_control")
    ]
    return _Prefix(hashes, tokens, marked)


def block_view(block: Any) -> Any:
    """A block as the cache sees it: a breakpoint marks where to cache, it is not part of the content."""
    return {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block


class PromptCache:
    """What the API's prompt cache does, for the usage it reports.

    The cache key is the prompt up to a block (tools, then system, then messages, in that order) and the
    model. A breakpoint (`cache_control`) writes the prefix up to its block, if that prefix reaches the
    model's minimum cacheable length; a request reads the longest prefix that was written before and ends
    at most `CACHE_LOOKBACK_BLOCKS` blocks before one of its breakpoints. Usage splits the prompt into
    `cache_read` (that prefix), `cache_creation` (from there to the last breakpoint that caches) and
    `input_tokens` (the rest). Entries never expire here (the API's last 5 minutes, refreshed by each read).
    """

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}
        self._lock = threading.Lock()

    def serve(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(cache_read, cache_creation, uncached input) tokens of this request; records what it writes."""
        prefix = _prefix(body)
        minimum = min_cacheable_tokens(str(body.get("model", "")))
        total = prefix.tokens[-1] if prefix.tokens else 0
        with self._lock:
            read = self._longest_hit(prefix)
            cached_end = read
            for index in prefix.breakpoints:
                if prefix.tokens[index] >= minimum:
                    self.entries[prefix.hashes[index]] = prefix.tokens[index]
                    cached_end = max(cached_end, prefix.tokens[index])
        return read, cached_end - read, total - cached_end

    def _longest_hit(self, prefix: _Prefix) -> int:
        best = 0
        for breakpoint in prefix.breakpoints:
            for index in range(breakpoint, max(-1, breakpoint - CACHE_LOOKBACK_BLOCKS - 1), -1):
                if prefix.hashes[index] in self.entries:
                    best = max(best, prefix.tokens[index])
                    break
        return best


# --- responses --------------------------------------------------------------------------------------


def _message_head(request: RecordedRequest) -> dict[str, Any]:
    return {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": request.body["model"],
        "stop_sequence": None,
    }


def _stop_reason(reply: Reply) -> str:
    return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _usage(usage: Usage, output_tokens: int | None = None) -> dict[str, Any]:
    """Usage as the API reports it; `message_start` carries a provisional output count."""
    body: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }
    if usage.reasoning_tokens:
        body["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return body


def _stream_blocks(reply: Reply) -> list[tuple[dict[str, Any], str | None]]:
    """Content blocks, each with the raw JSON text a tool_use block streams as `partial_json`."""
    calls = iter(reply.tool_calls)
    return [
        (block, next(calls).arguments if block["type"] == "tool_use" else None) for block in _blocks(reply)
    ]


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking is not None:
        signature = reply.signature or new_id("EqQBCkYIBxgCKkA", 64)
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [_tool_use(call) for call in reply.tool_calls]
    return blocks


def _tool_use(call: ToolCall) -> dict[str, Any]:
    """A tool_use block. Raw (broken) arguments only really exist in a stream; non-streaming, the fake
    puts the text itself in `input` — something the API never does — so callers see it unaltered."""
    tool_input: Any = dict(call.input)
    if call.raw_arguments is not None:
        try:
            tool_input = json.loads(call.raw_arguments)
        except ValueError:
            tool_input = call.raw_arguments
    return {"type": "tool_use", "id": call.id or new_id("toolu_01"), "name": call.name, "input": tool_input}


def _block_events(index: int, block: dict[str, Any], raw: str | None) -> list[bytes]:
    start, deltas = _block_start_and_deltas(block, raw)
    events = [_event("content_block_start", index=index, content_block=start)]
    events += [_event("content_block_delta", index=index, delta=delta) for delta in deltas]
    events.append(_event("content_block_stop", index=index))
    return events


def _block_start_and_deltas(
    block: dict[str, Any], raw: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """How the API opens a block and fills it: empty shells first, then deltas (tool input starts with "")."""
    if block["type"] == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": part} for part in pieces(block["thinking"])]
        return {"type": "thinking", "thinking": "", "signature": ""}, [
            *deltas,
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    if block["type"] == "text":
        return {"type": "text", "text": ""}, [
            {"type": "text_delta", "text": part} for part in pieces(block["text"])
        ]
    parts = ["", *pieces(raw or "")]
    shell = {**block, "input": {}}
    return shell, [{"type": "input_json_delta", "partial_json": part} for part in parts]


def _event(kind: str, **fields: Any) -> bytes:
    """An Anthropic SSE event: the `event:` name repeats the payload's `type` (the SDK skips unnamed ones)."""
    return sse({"type": kind, **fields}, kind)


# --- the contract -----------------------------------------------------------------------------------


def _invalid(message: str) -> HttpError:
    return HttpError(400, message)


def _check_headers(request: RecordedRequest) -> HttpError | None:
    """A key in `x-api-key` (older SDKs, curl) or `Authorization: Bearer` (what anthropic 2.x sends)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not request.headers.get("x-api-key") and not (scheme == "Bearer" and token.strip()):
        return HttpError(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return _invalid("anthropic-version: header is required")
    return None


def _check_fields(request: RecordedRequest) -> HttpError | None:
    body = request.body
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return _invalid(
            "max_tokens: Field required"
            if max_tokens is None
            else "max_tokens: Input should be a valid integer"
        )
    if max_tokens < 1:
        return _invalid("max_tokens: Input should be greater than or equal to 1")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return _invalid(
            "messages: Field required"
            if "messages" not in body
            else "messages: at least one message is required"
        )
    return None


def _check_roles(request: RecordedRequest) -> HttpError | None:
    messages = request.body["messages"]
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return _invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if index == 0 and role != "user":
            return _invalid('messages: first message must use the "user" role')
        if index and role == messages[index - 1]["role"]:
            return _invalid(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
    return None


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _tool_use_ids(message: dict[str, Any]) -> list[str]:
    return [block.get("id", "") for block in _content(message) if block.get("type") == "tool_use"]


def _check_tool_pairs(request: RecordedRequest) -> HttpError | None:
    """Every tool_result answers a tool_use of the message just before; every tool_use gets its result."""
    messages = request.body["messages"]
    for index, message in enumerate(messages):
        offered = _tool_use_ids(messages[index - 1]) if index else []
        answered = []
        for position, block in enumerate(_content(message)):
            if block.get("type") != "tool_result":
                continue
            if block.get("tool_use_id") not in offered:
                return _invalid(
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` block "
                    "must have a corresponding `tool_use` block in the previous message."
                )
            answered.append(block["tool_use_id"])
        missing = [tool_id for tool_id in offered if tool_id not in answered]
        if missing and message.get("role") == "user":
            return _invalid(
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
    return None


def _cacheable_blocks(body: dict[str, Any]) -> list[Any]:
    system = body.get("system")
    blocks = list(system) if isinstance(system, list) else []
    blocks += body.get("tools") or []
    for message in body["messages"]:
        blocks += _content(message)
    return blocks


def _check_cache(request: RecordedRequest) -> HttpError | None:
    """Breakpoints in system, tools and messages, plus the top-level `cache_control` (anthropic 2.x's
    automatic caching), which marks the last cacheable block and so takes a slot too."""
    marked = [
        block
        for block in _cacheable_blocks(request.body)
        if isinstance(block, dict) and block.get("cache_control")
    ]
    found = len(marked) + (1 if request.body.get("cache_control") else 0)
    if found > MAX_CACHE_BREAKPOINTS:
        return _invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )
    return None


#: Models that take adaptive thinking only (Claude 4.7, the 5 family): the budget form is refused.
ADAPTIVE_ONLY = re.compile(r"^claude-(?:[a-z]+-(?:4-7|[5-9])|(?:mythos|fable)-)")
ADAPTIVE_ONLY_MESSAGE = (
    '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
    '"output_config.effort" to control thinking behavior.'
)


def _check_thinking(request: RecordedRequest) -> HttpError | None:
    body = request.body
    thinking = body.get("thinking") or {}
    if thinking.get("type") != "enabled":
        return None
    if ADAPTIVE_ONLY.match(str(body.get("model", ""))):
        return _invalid(ADAPTIVE_ONLY_MESSAGE)
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        return _invalid(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
        )
    interleaved = INTERLEAVED_THINKING_BETA in request.headers.get("anthropic-beta", "")
    if budget >= body["max_tokens"] and not interleaved:
        return _invalid(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
            "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
        )
    if body.get("temperature", 1) != 1:
        return _invalid(
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation "
            "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"
        )
    return _check_thinking_blocks(body["messages"])


def _check_thinking_blocks(messages: list[dict[str, Any]]) -> HttpError | None:
    """With thinking on, thinking blocks come back signed, and the assistant turn that holds the current
    tool use starts with one — which an adapter that drops thinking blocks breaks."""
    for index, message in enumerate(messages):
        for position, block in enumerate(_content(message)):
            if block.get("type") == "thinking" and not block.get("signature"):
                return _invalid(f"messages.{index}.content.{position}.thinking.signature: Field required")
    last = len(messages) - 2
    if last >= 0 and messages[last]["role"] == "assistant" and _tool_use_ids(messages[last]):
        first = (_content(messages[last]) or [{}])[0].get("type")
        if first not in ("thinking", "redacted_thinking"):
            return _invalid(
                f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
                "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
            )
    return None


CHECKS = (_check_headers, _check_fields, _check_roles, _check_tool_pairs, _check_cache, _check_thinking)
