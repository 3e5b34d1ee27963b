"""Claude through the Anthropic Messages API (the official `anthropic` SDK, 2.14+), streamed.

What the adapter adds to the SDK:

- Translation between `bot.providers.types` and the wire: signed `thinking` and `redacted_thinking`
  blocks go back unchanged; consecutive same-role messages merge (the API wants alternation) and a user
  turn lists its `tool_result` blocks first.
- Prompt caching: `cache_control` breakpoints on the last tool, the system prompt (the API caches in
  that order: tools, system, messages), the last block of the conversation, and the last block of the
  previous request (the user turn before the last answer) — the four the API allows. The API looks for a
  cached prefix at most 20 blocks before each breakpoint; a turn with many parallel tool calls adds more
  than that, and the breakpoint where the previous request ended keeps its cache readable anyway.
- Reliability. The SDK retries 429/5xx/529 and connection failures *before* a stream starts, honouring
  `retry-after`; a middleware counts those attempts and holds each one to the call's wall clock. Once
  a stream has started the SDK retries nothing — a stall surfaces as a raw `httpx2.ReadTimeout`, a drop
  as `httpx2.RemoteProtocolError`, an overload as an `error` event — so `complete` sends the whole
  request again itself. SDK retries and restarts share one budget, `limits.max_retries`.
- Our own stream accumulator: the SDK's parses tool-input JSON as it arrives and raises on text that
  is not JSON, and such arguments must reach the agent loop as written, to be answered with a tool error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from bot.providers.registry import ModelSpec
from bot.providers.types import (
    Block,
    CallLimits,
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    Reasoning,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    Usage,
)

EPHEMERAL = {"type": "ephemeral"}
DEFAULT_LIMITS = CallLimits()
MIN_THINKING_BUDGET = 1024
CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 60.0
DETAIL_LIMIT = 500

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "refusal": "refusal",
}
# `error.type` in an error body (also mid-stream, where the HTTP status is 200).
ERROR_KINDS = {
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "server",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_request_error": "bad_request",
    "request_too_large": "bad_request",
    "not_found_error": "bad_request",
}
RETRYABLE = frozenset({"rate_limit", "overloaded", "server", "timeout", "stall", "connection", "malformed"})


class AnthropicProvider:
    """One Claude model. `complete` streams a turn; failures that outlast the retries raise `ProviderError`.

    Thinking: a `budget_tokens` becomes `{"type": "enabled", ...}`, and when the request's `max_tokens`
    does not exceed the budget, `max_tokens` grows to budget + the request's `max_tokens` (the answer
    keeps its room), capped at `spec.max_output_tokens`, the budget shrinking below the cap if it must.
    Thinking without a budget, or on a model that only takes adaptive thinking (`ModelSpec.thinking`), is
    `{"type": "adaptive"}`; no thinking sends no `thinking` parameter.
    """

    name = "anthropic"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        api_key: str,
        base_url: str | None = None,
        limits: CallLimits = DEFAULT_LIMITS,
    ) -> None:
        self.model = spec.model
        self._spec = spec
        self._limits = limits
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=limits.max_retries,
            timeout=_timeout(limits.stall_timeout_s, limits.timeout_s),
        )

    def complete(self, request: ModelRequest) -> ModelResponse:
        params = wire_params(self.model, request, self._spec.max_output_tokens, self._spec.thinking)
        call = _Call(self._limits)
        while True:
            try:
                draft = self._attempt(params, call)
            except _Failure as failure:
                if failure.final or not call.may_restart(failure.kind):
                    raise self._error(failure, call) from failure.__cause__
                call.restart()
                continue
            return draft.response(self.name, self.model, call)

    def close(self) -> None:
        """Close the connection pool (the client is also closed when it is garbage-collected)."""
        self._client.close()

    def _attempt(self, params: dict[str, Any], call: _Call) -> _Draft:
        """One request with the SDK's own retries; a failure once the stream is open is left to the caller."""
        client = self._client.with_options(max_retries=call.sdk_retries_left(), middleware=[call])
        try:
            stream = client.messages.create(**params, stream=True)
        except anthropic.APIError as error:
            raise _Failure(_kind(error), _detail(error), final=True) from error
        with stream:
            try:
                return _collect(stream, call)
            except (anthropic.APIError, httpx2.TransportError, ValueError) as error:
                kind = _kind(error)
                call.stalls += kind == "stall"
                raise _Failure(kind, _detail(error)) from error

    def _error(self, failure: _Failure, call: _Call) -> ProviderError:
        kind, detail = failure.kind, failure.detail
        if call.remaining() <= 0:
            kind, detail = "timeout", f"wall clock of {self._limits.timeout_s:g}s spent; last: {detail}"
        message = f"{self.name} {self.model}: {kind}: {detail}"
        if self._client.api_key:
            message = message.replace(self._client.api_key, "***")
        return ProviderError(kind, message, retries=call.retries, stalls=call.stalls)


# --- the request --------------------------------------------------------------------------------------


def wire_params(
    model: str, request: ModelRequest, output_cap: int, thinking_form: str = "budget"
) -> dict[str, Any]:
    """The `messages.create` arguments for `request`, cache breakpoints included (`stream` excepted).
    `thinking_form` is the model's (`ModelSpec.thinking`): an `adaptive`-only model never gets a budget."""
    reasoning = request.reasoning
    if thinking_form == "adaptive" and reasoning.budget_tokens is not None:
        reasoning = reasoning.model_copy(update={"budget_tokens": None})  # the model decides how much
    max_tokens, thinking = _thinking(reasoning, min(request.max_tokens, output_cap), output_cap)
    params: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": wire_messages(request)}
    if request.system:
        params["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
    if request.tools:
        tools = [tool.to_anthropic() for tool in request.tools]
        params["tools"] = [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]
    if thinking is not None:
        params["thinking"] = thinking
    return params


def _thinking(reasoning: Reasoning, max_tokens: int, cap: int) -> tuple[int, dict[str, Any] | None]:
    if not reasoning.enabled:
        return max_tokens, None
    if reasoning.budget_tokens is None:
        return max_tokens, {"type": "adaptive"}
    budget = reasoning.budget_tokens
    if max_tokens <= budget:
        max_tokens = max(max_tokens, min(budget + max_tokens, cap))
        budget = max(MIN_THINKING_BUDGET, min(budget, max_tokens - 1))  # below 1024 the API says so
    return max_tokens, {"type": "enabled", "budget_tokens": budget}


def wire_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Messages on the wire: same-role neighbours merged, tool results first in a user turn, and cache
    breakpoints on the last block that may carry one (thinking blocks may not) of the last message and of
    the user turn that ended the previous request."""
    wire: list[dict[str, Any]] = []
    for message in request.messages:
        blocks = [block for block in map(_wire_block, message.content) if block is not None]
        if not blocks:
            continue
        if wire and wire[-1]["role"] == message.role:
            wire[-1]["content"] += blocks
        else:
            wire.append({"role": message.role, "content": blocks})
    for message in wire:
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    if wire:
        _mark_last_block(wire[-1]["content"])
    if len(wire) >= 3 and wire[-3]["role"] == "user":
        _mark_last_block(wire[-3]["content"])  # where the previous request ended: its cache is read
    return wire


def _wire_block(block: Block) -> dict[str, Any] | None:
    """One block as the API takes it; None for what it would refuse (empty text, unsigned thinking —
    another provider's reasoning)."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text} if block.text else None
    if isinstance(block, ThinkingBlock):
        if block.redacted:
            return {"type": "redacted_thinking", "data": block.text}
        if not block.signature:
            return None
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    if isinstance(block, ToolCall):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": _tool_input(block.arguments)}
    result = {"type": "tool_result", "tool_use_id": block.call_id, "content": block.content}
    return {**result, "is_error": True} if block.is_error else result


def _tool_input(arguments: str) -> dict[str, Any]:
    """The call's arguments as the object the API wants; `{}` when the model wrote something else."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _mark_last_block(blocks: list[dict[str, Any]]) -> None:
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index]["type"] not in ("thinking", "redacted_thinking"):
            blocks[index] = {**blocks[index], "cache_control": EPHEMERAL}
            return


def _timeout(stall_s: float, remaining_s: float) -> anthropic.Timeout:
    """httpx's read timeout is the longest silence between two reads: the stall timeout, inside a stream
    as well as before the response's headers. Nothing may outlast the call's remaining wall clock."""
    return anthropic.Timeout(
        connect=min(CONNECT_TIMEOUT_S, remaining_s),
        read=min(stall_s, remaining_s),
        write=min(WRITE_TIMEOUT_S, remaining_s),
        pool=min(CONNECT_TIMEOUT_S, remaining_s),
    )


# --- one call across its attempts ---------------------------------------------------------------------


class _Failure(Exception):
    """An attempt failed. `final`: the SDK has retried already (the stream never started)."""

    def __init__(self, kind: str, detail: str, *, final: bool = False) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.final = kind, detail, final


@dataclass
class _Call:
    """The bookkeeping of one `complete` call; also the SDK middleware, run once per HTTP attempt."""

    limits: CallLimits
    started: float = field(default_factory=time.monotonic)
    retries: int = 0
    stalls: int = 0
    _restarted_at: int = 0  # `retries` when the current request was sent

    @property
    def deadline(self) -> float:
        return self.started + self.limits.timeout_s

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sdk_retries_left(self) -> int:
        return self.limits.max_retries - self.retries

    def may_restart(self, kind: str) -> bool:
        return kind in RETRYABLE and self.retries < self.limits.max_retries and self.remaining() > 0

    def restart(self) -> None:
        self.retries += 1
        self._restarted_at = self.retries

    def __call__(self, request: anthropic.APIRequest, call_next: anthropic.CallNext) -> Any:
        """Count the SDK's retries and stalls before the headers; give each attempt what time is left."""
        self.retries = self._restarted_at + request.retries_taken
        remaining = self.remaining()
        if remaining <= 0:  # a non-SDK exception: the SDK's retry loop lets it through
            raise _Failure("timeout", "no time left for another attempt", final=True)
        try:
            return call_next(_with_timeout(request, _timeout(self.limits.stall_timeout_s, remaining)))
        except anthropic.APITimeoutError as error:
            self.stalls += isinstance(error.__cause__, httpx2.ReadTimeout)
            raise


def _with_timeout(request: anthropic.APIRequest, timeout: anthropic.Timeout) -> anthropic.APIRequest:
    """`request` with another timeout. Not `request.copy(timeout=...)`: that deep-copies the JSON body —
    the whole conversation, on every attempt, the largest cost of a turn in a long run. The body is
    shared, which is safe: nothing on the way (ours or the SDK's) mutates it."""
    return anthropic.APIRequest(
        options=request.options.model_copy(update={"timeout": timeout}),
        cast_to=request.cast_to,
        stream=request.stream,
        stream_cls=request.stream_cls,
        retries_taken=request.retries_taken,
    )


def _kind(error: Exception) -> str:
    if isinstance(error, anthropic.APITimeoutError):
        return "stall" if isinstance(error.__cause__, httpx2.ReadTimeout) else "timeout"
    if isinstance(error, anthropic.APIConnectionError):
        return "connection"
    if isinstance(error, anthropic.APIStatusError):
        return _status_kind(error)
    if isinstance(error, httpx2.ReadTimeout):
        return "stall"
    if isinstance(error, httpx2.TimeoutException):
        return "timeout"
    if isinstance(error, httpx2.TransportError):
        return "connection"
    return "malformed"


def _status_kind(error: anthropic.APIStatusError) -> str:
    status = error.status_code
    if error.type in ERROR_KINDS:
        return ERROR_KINDS[error.type]
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    if status == 529:
        return "overloaded"
    return "server" if status >= 500 else "bad_request"


def _detail(error: Exception) -> str:
    if isinstance(error, anthropic.APIStatusError):
        text = f"HTTP {error.status_code} {error.type}: {error.api_message} (request {error.request_id})"
    else:
        text = f"{type(error).__name__}: {error}"
    return text[:DETAIL_LIMIT]


# --- the stream ---------------------------------------------------------------------------------------

# delta type → (field of the delta, field of the block being built)
DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "input_json_delta": ("partial_json", "json"),
}


@dataclass
class _Draft:
    """A message assembled from raw stream events."""

    model: str = ""
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def add(self, event: Any) -> None:
        if event.type == "message_start":
            self.model = event.message.model
            self.usage = event.message.usage.to_dict()
        elif event.type == "content_block_start":
            self.blocks[event.index] = {**event.content_block.to_dict(), "json": ""}
        elif event.type == "content_block_delta" and event.delta.type in DELTAS:
            source, target = DELTAS[event.delta.type]
            block = self.blocks[event.index]
            block[target] = (block.get(target) or "") + getattr(event.delta, source)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self.usage.update(event.usage.to_dict(exclude_none=True))  # cumulative counts
        elif event.type == "message_stop":
            self.done = True

    def response(self, provider: str, model: str, call: _Call) -> ModelResponse:
        blocks = [_block(self.blocks[index]) for index in sorted(self.blocks)]
        return ModelResponse(
            message=Message(role="assistant", content=tuple(block for block in blocks if block is not None)),
            stop_reason=STOP_REASONS.get(self.stop_reason or "", "other"),
            usage=_usage(self.usage),
            provider=provider,
            model=self.model or model,
            latency_s=time.monotonic() - call.started,
            retries=call.retries,
            stalls=call.stalls,
        )


def _collect(stream: Any, call: _Call) -> _Draft:
    draft = _Draft()
    for event in stream:
        draft.add(event)
        if call.remaining() <= 0:
            raise _Failure("timeout", "the stream outlasted the wall clock", final=True)
    if not draft.done:
        raise _Failure("connection", "the stream ended before `message_stop`")
    return draft


def _block(raw: dict[str, Any]) -> Block | None:
    """Ours from a finished wire block; server-tool blocks and the like are dropped."""
    kind = raw["type"]
    if kind == "text":
        return TextBlock(text=raw["text"])
    if kind == "thinking":
        return ThinkingBlock(text=raw["thinking"], signature=raw.get("signature") or None)
    if kind == "redacted_thinking":
        return ThinkingBlock(text=raw["data"], redacted=True)
    if kind == "tool_use":
        return ToolCall(id=raw["id"], name=raw["name"], arguments=_arguments(raw))
    return None


def _arguments(raw: dict[str, Any]) -> str:
    """The tool input as JSON text; text that does not parse is kept exactly as the model wrote it."""
    text = raw["json"] or json.dumps(raw.get("input") or {})
    try:
        return json.dumps(json.loads(text))
    except ValueError:
        return text


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("output_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cache_write_tokens=usage.get("cache_creation_input_tokens") or 0,
        cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )
