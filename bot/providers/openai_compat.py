"""Chat Completions adapter: OpenAI, Kimi at Moonshot, OpenRouter, and any compatible server (vLLM, Ollama).

Every call streams (`stream_options.include_usage`), so a silent connection is noticed within the stall
timeout instead of after the whole answer. Reliability, in one place:

- the SDK retries errors that arrive before the stream starts (429 and 5xx honouring `retry-after` up to
  120 s, timeouts, dropped connections); an httpx request hook counts every HTTP request of the call, so
  `ModelResponse.retries` is "requests − 1";
- a stream that stalls or drops mid-way is restarted here, the whole call again, within the same budget
  (`limits.max_retries` in all) and the call's wall clock (`limits.timeout_s`);
- every network wait is bounded by `limits.stall_timeout_s` (the httpx timeout), clipped to the time left.

Dialects, chosen from the spec's provider (`moonshot=` overrides):
- OpenAI: `max_completion_tokens`; `reasoning_effort="medium"` when reasoning is on, for the models that
  take it (ids starting `gpt-5` or `o` + digit); no `reasoning_content` is sent to api.openai.com, which
  rejects unknown message fields.
- Moonshot (platform.kimi.ai/docs/guide/use-kimi-k2-thinking-model): `max_tokens`; thinking switched by
  `extra_body={"thinking": {"type": "enabled"|"disabled"}}`; with thinking on, every earlier assistant
  message with tool calls carries its `reasoning_content` back (a single space when none was kept: reports
  disagree on whether "" passes). Kimi fixes temperature, top_p, n and the penalties — this adapter sends
  no sampling parameters to anyone.
- Others (OpenRouter, local servers): `max_tokens`; reasoning text received is echoed back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from bot.providers.registry import ModelSpec, Provider
from bot.providers.types import (
    Block,
    CallLimits,
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolResultBlock,
    Usage,
)

DEFAULT_BASE_URLS = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.MOONSHOT: "https://api.moonshot.ai/v1",
    Provider.OPENROUTER: "https://openrouter.ai/api/v1",
}
DEFAULT_LIMITS = CallLimits()
OPENAI_HOST = "api.openai.com"
REASONING_EFFORT_MODELS = re.compile(r"^(gpt-[5-9]|o\d)")  # GPT-5 and later, the o-series
REASONING_EFFORT = "medium"
KIMI_NO_REASONING = " "  # what an assistant tool-call turn carries back when no reasoning was kept
TOOL_ERROR_PREFIX = "ERROR: "  # the wire has no error flag on `tool` messages
STOP_REASONS: Mapping[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


# --- counting requests --------------------------------------------------------------------------------


@dataclass
class _Call:
    """One `complete()` in flight: its deadline and the HTTP requests it has made so far."""

    deadline: float
    requests: int = 0


_CURRENT_CALL: ContextVar[_Call | None] = ContextVar("openai_compat_call", default=None)


class _OutOfTime(Exception):
    """Raised by the request hook: the SDK was about to retry past the call's wall clock."""


def _on_request(request: httpx2.Request) -> None:
    """httpx request hook: count the attempt (SDK retries included) and refuse one past the deadline."""
    call = _CURRENT_CALL.get()
    if call is None:
        return
    if call.requests and time.monotonic() >= call.deadline:
        raise _OutOfTime
    call.requests += 1


class _Failure(Exception):
    """An attempt failed; `restart` says whether a fresh attempt may help (mid-stream trouble only)."""

    def __init__(self, kind: str, detail: str, *, restart: bool = False) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.restart = kind, detail, restart


# --- the adapter --------------------------------------------------------------------------------------


class OpenAICompatProvider:
    """One model behind an OpenAI-compatible Chat Completions endpoint."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        api_key: str,
        base_url: str | None,
        limits: CallLimits = DEFAULT_LIMITS,
        moonshot: bool | None = None,
    ) -> None:
        self.name = spec.provider.value
        self.model = spec.model
        self.limits = limits
        self.moonshot = spec.provider == Provider.MOONSHOT if moonshot is None else moonshot
        self.openai_dialect = spec.provider == Provider.OPENAI and not self.moonshot
        url = base_url or DEFAULT_BASE_URLS.get(spec.provider, DEFAULT_BASE_URLS[Provider.OPENAI])
        self.echo_reasoning = OPENAI_HOST not in url
        self._api_key = api_key
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=url,
            max_retries=limits.max_retries,
            timeout=httpx2.Timeout(limits.stall_timeout_s),
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [_on_request]}),
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def complete(self, request: ModelRequest) -> ModelResponse:
        started = time.monotonic()
        call = _Call(deadline=started + self.limits.timeout_s)
        token = _CURRENT_CALL.set(call)
        try:
            return self._complete(self.request_body(request), call, started)
        finally:
            _CURRENT_CALL.reset(token)

    def _complete(self, body: dict[str, Any], call: _Call, started: float) -> ModelResponse:
        stalls = 0
        while True:
            try:
                turn = self._attempt(body, call)
            except _Failure as failure:
                stalls += failure.kind == "stall"
                if not self._may_restart(failure, call):
                    raise self._error(failure, call, stalls) from failure.__cause__
                continue
            return turn.response(
                provider=self.name,
                model=turn.model or self.model,
                latency_s=time.monotonic() - started,
                retries=max(call.requests - 1, 0),
                stalls=stalls,
            )

    def _may_restart(self, failure: _Failure, call: _Call) -> bool:
        in_time = time.monotonic() < call.deadline
        return failure.restart and in_time and call.requests <= self.limits.max_retries

    def _error(self, failure: _Failure, call: _Call, stalls: int) -> ProviderError:
        message = f"{self.name} {self.model}: {failure.kind}: {failure.detail}"
        if self._api_key:
            message = message.replace(self._api_key, "[redacted]")
        return ProviderError(failure.kind, message, retries=max(call.requests - 1, 0), stalls=stalls)

    # --- one attempt ------------------------------------------------------------------------------------

    def _attempt(self, body: dict[str, Any], call: _Call) -> _Turn:
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("timeout", f"no answer within {self.limits.timeout_s:g} s")
        wait = min(self.limits.stall_timeout_s, remaining)
        client = self._client.with_options(
            max_retries=max(self.limits.max_retries - call.requests, 0), timeout=httpx2.Timeout(wait)
        )
        stream = self._open(client, body)
        quiet_kind = "stall" if wait == self.limits.stall_timeout_s else "timeout"
        return self._read(stream, call, quiet_kind)

    def _open(self, client: openai.OpenAI, body: dict[str, Any]) -> openai.Stream[Any]:
        """Send the request; the SDK retries what fails before the first byte of the stream."""
        try:
            return client.chat.completions.create(**body)
        except openai.APIStatusError as error:
            raise _Failure(_status_kind(error), _status_detail(error)) from error
        except openai.APITimeoutError as error:
            raise _Failure("timeout", "no response before the timeout") from error
        except openai.APIConnectionError as error:
            raise _Failure("connection", _transport_detail(error)) from error
        except _OutOfTime as error:
            raise _Failure("timeout", f"no answer within {self.limits.timeout_s:g} s") from error

    def _read(self, stream: openai.Stream[Any], call: _Call, quiet_kind: str) -> _Turn:
        """Accumulate the stream; trouble in the middle of it is worth a fresh attempt."""
        turn = _Turn()
        try:
            with stream:
                for chunk in stream:
                    turn.add(chunk)
                    if time.monotonic() >= call.deadline:
                        raise _Failure("timeout", f"no answer within {self.limits.timeout_s:g} s")
        except openai.APITimeoutError as error:
            detail = f"the stream went quiet for {self.limits.stall_timeout_s:g} s"
            raise _Failure(quiet_kind, detail, restart=True) from error
        except openai.APIConnectionError as error:
            raise _Failure("connection", _transport_detail(error), restart=True) from error
        except openai.APIError as error:  # an `error` event inside the stream
            raise _Failure("server", f"error in the stream: {error.message}", restart=True) from error
        except ValueError as error:  # an event that is not JSON
            raise _Failure("malformed", f"unreadable stream event: {error}", restart=True) from error
        if turn.finish_reason is None:
            raise _Failure("connection", "the stream ended without a finish_reason", restart=True)
        return turn

    # --- the request ------------------------------------------------------------------------------------

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The `chat.completions.create` arguments for `request` (public for inspection in tests)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.wire_messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [tool.to_openai() for tool in request.tools]
        body["max_completion_tokens" if self.openai_dialect else "max_tokens"] = request.max_tokens
        if self.moonshot:
            thinking = "enabled" if request.reasoning.enabled else "disabled"
            body["extra_body"] = {"thinking": {"type": thinking}}
        elif self.openai_dialect and request.reasoning.enabled and REASONING_EFFORT_MODELS.match(self.model):
            body["reasoning_effort"] = REASONING_EFFORT
        return body

    def wire_messages(self, request: ModelRequest) -> list[dict[str, Any]]:
        wire: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
        kimi_thinking = self.moonshot and request.reasoning.enabled
        for message in request.messages:
            if message.role == "user":
                wire += _user_messages(message)
            elif message.content:  # Moonshot rejects an empty assistant message; it carries nothing anyway
                wire.append(self._assistant_message(message, kimi_thinking))
        return wire

    def _assistant_message(self, message: Message, kimi_thinking: bool) -> dict[str, Any]:
        calls = message.tool_calls()
        wire: dict[str, Any] = {"role": "assistant", "content": message.text()}
        if calls:
            wire["tool_calls"] = [_wire_tool_call(call) for call in calls]
        reasoning = "".join(
            block.text for block in message.content if isinstance(block, ThinkingBlock) and not block.redacted
        )
        if kimi_thinking and calls:
            wire["reasoning_content"] = reasoning or KIMI_NO_REASONING
        elif reasoning and self.echo_reasoning:
            wire["reasoning_content"] = reasoning
        return wire


def _user_messages(message: Message) -> list[dict[str, Any]]:
    """Tool results become `tool` messages (they must follow the calls directly); any text comes after."""
    wire = [
        {
            "role": "tool",
            "tool_call_id": block.call_id,
            "content": TOOL_ERROR_PREFIX + block.content if block.is_error else block.content,
        }
        for block in message.content
        if isinstance(block, ToolResultBlock)
    ]
    text = message.text()
    if text or not wire:
        wire.append({"role": "user", "content": text})
    return wire


def _wire_tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


# --- the stream ---------------------------------------------------------------------------------------


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Turn:
    """What the chunks of one stream add up to."""

    model: str = ""
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Any = None

    def add(self, chunk: Any) -> None:
        self.model = self.model or chunk.model or ""
        if chunk.usage is not None:  # the `include_usage` chunk: the authority
            self.usage = chunk.usage
        for choice in chunk.choices:
            self._add_delta(choice.delta)
            self.finish_reason = choice.finish_reason or self.finish_reason
            if self.usage is None:  # Moonshot also puts usage in the finishing choice
                self.usage = getattr(choice, "usage", None)

    def _add_delta(self, delta: Any) -> None:
        if delta is None:
            return
        self.text.append(delta.content or "")
        # Moonshot and vLLM say `reasoning_content`, OpenRouter `reasoning`: extra fields the SDK keeps.
        reasoning = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
        self.reasoning.append(reasoning or "")
        for fragment in delta.tool_calls or []:
            partial = self.calls.setdefault(self._index(fragment), _PartialCall())
            partial.id = partial.id or fragment.id or ""
            if fragment.function is not None:
                partial.name = partial.name or fragment.function.name or ""
                partial.arguments.append(fragment.function.arguments or "")

    def _index(self, fragment: Any) -> int:
        """The call a fragment belongs to; a server that omits `index` opens a call with each new id."""
        if fragment.index is not None:
            return fragment.index
        if fragment.id or not self.calls:
            return len(self.calls)
        return max(self.calls)

    def response(self, **fields: Any) -> ModelResponse:
        blocks: list[Block] = []
        if reasoning := "".join(self.reasoning):
            blocks.append(ThinkingBlock(text=reasoning))
        if text := "".join(self.text):
            blocks.append(TextBlock(text=text))
        for index, partial in sorted(self.calls.items()):
            arguments = "".join(partial.arguments)
            blocks.append(ToolCall(id=partial.id or f"call_{index}", name=partial.name, arguments=arguments))
        message = Message(role="assistant", content=tuple(blocks))
        stop = _stop_reason(self.finish_reason, has_calls=bool(self.calls))
        return ModelResponse(message=message, stop_reason=stop, usage=_usage(self.usage), **fields)


def _stop_reason(finish_reason: str | None, *, has_calls: bool) -> StopReason:
    """Tool calls win over a plain "stop": Ollama and some vLLM versions finish tool turns that way."""
    if has_calls and finish_reason in ("stop", "tool_calls", "function_call"):
        return "tool_use"
    return STOP_REASONS.get(finish_reason or "", "other")


def _usage(raw: Any) -> Usage:
    """`prompt_tokens` include cached ones; Moonshot may report `cached_tokens` at the top level."""
    if raw is None:
        return Usage()
    prompt = _field(raw, "prompt_tokens") or 0
    details = _field(raw, "prompt_tokens_details")
    cached = _field(details, "cached_tokens") or _field(raw, "cached_tokens") or 0
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=_field(raw, "completion_tokens") or 0,
        cache_read_tokens=cached,
        reasoning_tokens=_field(_field(raw, "completion_tokens_details"), "reasoning_tokens") or 0,
    )


def _field(value: Any, name: str) -> Any:
    """A field of an SDK model or of a plain dict (extra fields such as `choices[0].usage` stay dicts)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


# --- errors -------------------------------------------------------------------------------------------


def _status_kind(error: openai.APIStatusError) -> str:
    status = error.status_code
    if status in (503, 529) or "overload" in _status_detail(error).lower():
        return "overloaded"  # Moonshot says 429 `engine_overloaded_error`
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    return "server" if status >= 500 else "bad_request"


def _status_detail(error: openai.APIStatusError) -> str:
    body = error.body if isinstance(error.body, Mapping) else {}
    kind = body.get("type") or body.get("code")
    message = body.get("message") or error.message
    return f"HTTP {error.status_code}" + (f" {kind}" if kind else "") + f": {message}"


def _transport_detail(error: openai.APIConnectionError) -> str:
    cause = error.__cause__
    return f"{error.message} ({type(cause).__name__})" if cause is not None else error.message
