"""Chat Completions adapter: OpenAI, Kimi at Moonshot, OpenRouter, and any compatible server (vLLM, Ollama).

Every call streams (`stream_options.include_usage`), so a silent connection is noticed within the stall
timeout instead of after the whole answer. Reliability, in one place:

- the SDK retries errors that arrive before the stream starts (429 and 5xx honouring `retry-after` up to
  120 s, timeouts, dropped connections); an httpx request hook counts every HTTP request of the call, so
  `ModelResponse.retries` is "requests − 1";
- a stream that stalls or drops mid-way is restarted here, the whole call again, within the same budget
  (`limits.max_retries` in all) and the call's wall clock (`limits.timeout_s`);
- every network wait is bounded by `limits.stall_timeout_s` (the httpx timeout), clipped to the time left.

Sloppy hosts (issue 14; each repair is named in `ModelResponse.recoveries` and logged, never silent):
- a tool call leaked as Kimi template markup into the text becomes a tool call again
  (`leaked_tool_call`, one per call; the grammar is in `bot/providers/wire_recovery.py`);
- a call whose arguments came both as deltas and whole is not doubled (`mixed_arguments`, one per call);
- the turn ends on `finish_reason`: a stream that then closes without `data: [DONE]`, or goes quiet for
  `AFTER_FINISH_GRACE_S`, is a finished answer, not a stall (`missing_done`). The chunks are read on a
  helper thread so that wait can be shorter than the stall timeout; the SDK's Stream itself stops at
  [DONE] and at the end of the body alike, so a watching SSE decoder notes which one it was.
`recover=False` turns the three off (the answer as the wire gave it, a quiet stream after finish_reason
is a stall as before), for measuring what they are worth (`scripts/bench.py sloppy`).
`stream=False` asks for a whole `chat.completion` instead (for hosts whose streaming is broken); the same
repairs apply to it.

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

import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from openai._streaming import ServerSentEvent, SSEDecoder

from bot.providers import wire_recovery
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
log = logging.getLogger(__name__)

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
AFTER_FINISH_GRACE_S = 2.0  # how long to wait for the usage chunk and [DONE] once finish_reason is in
LEAKED_TOOL_CALL = "leaked_tool_call"
MIXED_ARGUMENTS = "mixed_arguments"
MISSING_DONE = "missing_done"
RECOVERED_LOG = "%s %s: recovered a sloppy answer: %s"


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


# --- the SDK client, watching for [DONE] ---------------------------------------------------------------


class _DoneWatcher(SSEDecoder):
    """The SDK's SSE decoder, noting whether the stream said `[DONE]` before it ended."""

    def __init__(self) -> None:
        super().__init__()
        self.saw_done = False

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[ServerSentEvent]:
        for event in super().iter_bytes(iterator):
            self.saw_done = self.saw_done or event.data.startswith("[DONE]")
            yield event


class _Client(openai.OpenAI):
    """`openai.OpenAI` whose streams carry a `_DoneWatcher` (`with_options` keeps the class)."""

    def _make_sse_decoder(self) -> _DoneWatcher:
        return _DoneWatcher()


def _saw_done(stream: openai.Stream[Any]) -> bool:
    decoder = getattr(stream, "_decoder", None)
    if not isinstance(decoder, _DoneWatcher):  # an SDK change: fail loudly rather than miscount
        raise TypeError(f"the openai SDK's Stream no longer uses our SSE decoder ({type(decoder)!r})")
    return decoder.saw_done


_END = object()  # the pump's last item: the stream's body ended


def _pump(stream: openai.Stream[Any], items: queue.Queue[Any]) -> None:
    """Helper thread: every chunk of `stream`, then `_END` — or the exception that stopped it."""
    try:
        with stream:
            for chunk in stream:
                items.put(chunk)
        items.put(_END)
    except BaseException as error:  # handed to the reading thread, which raises or judges it
        items.put(error)


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
        stream: bool = True,
        recover: bool = True,
    ) -> None:
        self.name = spec.provider.value
        self.model = spec.model
        self.limits = limits
        self.moonshot = spec.provider == Provider.MOONSHOT if moonshot is None else moonshot
        self.openai_dialect = spec.provider == Provider.OPENAI and not self.moonshot
        self.stream, self.recover = stream, recover
        url = base_url or DEFAULT_BASE_URLS.get(spec.provider, DEFAULT_BASE_URLS[Provider.OPENAI])
        self.echo_reasoning = OPENAI_HOST not in url
        self._api_key = api_key
        self._client = _Client(
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
            response = turn.response(
                recover=self.recover,
                provider=self.name,
                model=turn.model or self.model,
                latency_s=time.monotonic() - started,
                retries=max(call.requests - 1, 0),
                stalls=stalls,
            )
            if response.recoveries:
                log.info(RECOVERED_LOG, self.name, self.model, ", ".join(response.recoveries))
            return response

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
        answer = self._open(client, body)
        if not self.stream:
            return _Turn.from_completion(answer)
        quiet_kind = "stall" if wait == self.limits.stall_timeout_s else "timeout"
        return self._read(answer, call, quiet_kind)

    def _open(self, client: openai.OpenAI, body: dict[str, Any]) -> Any:
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
            self._drain(stream, turn, call)
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

    def _drain(self, stream: openai.Stream[Any], turn: _Turn, call: _Call) -> None:
        """Feed `turn` from a pump thread; once `finish_reason` is in, wait only briefly for the rest.

        Past `finish_reason` the answer is whole: a body that ends without [DONE], goes quiet or breaks is
        noted as `missing_done` and the thread is left to its own timeout (it closes the stream itself).
        """
        items: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=_pump, args=(stream, items), name="openai-stream", daemon=True).start()
        while True:
            finished = turn.finish_reason is not None
            try:
                item = items.get(timeout=AFTER_FINISH_GRACE_S if finished and self.recover else None)
            except queue.Empty:
                turn.missing_done = True
                return
            if item is _END:
                turn.missing_done = finished and not _saw_done(stream) and self.recover
                return
            if isinstance(item, BaseException):
                if finished and self.recover and isinstance(item, openai.APIConnectionError):  # and timeouts
                    turn.missing_done = True
                    return
                raise item
            turn.add(item)
            if time.monotonic() >= call.deadline:
                raise _Failure("timeout", f"no answer within {self.limits.timeout_s:g} s")

    # --- the request ------------------------------------------------------------------------------------

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The `chat.completions.create` arguments for `request` (public for inspection in tests)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.wire_messages(request),
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}
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

    def tool_call(self, index: int, *, recover: bool) -> tuple[ToolCall, bool]:
        """The finished call, and whether its argument chunks had to be untangled."""
        if recover:
            arguments, mixed = wire_recovery.join_arguments(self.arguments)
        else:
            arguments, mixed = "".join(self.arguments), False
        return ToolCall(id=self.id or f"call_{index}", name=self.name, arguments=arguments), mixed


@dataclass
class _Turn:
    """What the chunks of one stream add up to."""

    model: str = ""
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Any = None
    missing_done: bool = False

    @classmethod
    def from_completion(cls, completion: Any) -> _Turn:
        """A whole `chat.completion` as the one-chunk stream it is equivalent to."""
        turn = cls(model=completion.model or "", usage=completion.usage)
        for choice in completion.choices[:1]:
            message = choice.message
            turn.text.append(message.content or "")
            turn.reasoning.append(getattr(message, "reasoning_content", None) or "")
            for index, wire in enumerate(message.tool_calls or []):
                function = getattr(wire, "function", None)
                name, arguments = (function.name, function.arguments) if function else ("", "")
                turn.calls[index] = _PartialCall(id=wire.id or "", name=name or "", arguments=[arguments])
            turn.finish_reason = choice.finish_reason
        return turn

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
        """The call a fragment belongs to; a server that omits `index` opens a call with each new id.

        A fragment repeating a known id belongs to that call, whatever its index says: whole-argument
        repeats are not new calls."""
        for index, partial in self.calls.items():
            if fragment.id and partial.id == fragment.id:
                return index
        if fragment.index is not None:
            return fragment.index
        if fragment.id or not self.calls:
            return len(self.calls)
        return max(self.calls)

    def response(self, *, recover: bool = True, **fields: Any) -> ModelResponse:
        recoveries: list[str] = []
        calls = []
        for index, partial in sorted(self.calls.items()):
            call, mixed = partial.tool_call(index, recover=recover)
            calls.append(call)
            recoveries += [MIXED_ARGUMENTS] * mixed
        reasoning, text = "".join(self.reasoning), "".join(self.text)
        from_reasoning: list[ToolCall] = []
        from_text: list[ToolCall] = []
        if recover:
            reasoning, from_reasoning = _recover_leaks(reasoning, calls)
            text, from_text = _recover_leaks(text, calls + from_reasoning)
        leaked = from_reasoning + from_text
        recoveries += [LEAKED_TOOL_CALL] * len(leaked) + [MISSING_DONE] * self.missing_done
        blocks: list[Block] = [ThinkingBlock(text=reasoning)] if reasoning else []
        blocks += [TextBlock(text=text)] if text else []
        message = Message(role="assistant", content=(*blocks, *calls, *leaked))
        stop = _stop_reason(self.finish_reason, has_calls=bool(calls or leaked))
        usage = _usage(self.usage)
        return ModelResponse(
            message=message, stop_reason=stop, usage=usage, recoveries=tuple(recoveries), **fields
        )


def _recover_leaks(text: str, known: list[ToolCall]) -> tuple[str, list[ToolCall]]:
    """Tool calls leaked as markup into `text`, minus any the host also sent properly, and the text left."""
    rest, leaked = wire_recovery.leaked_calls(text, first_index=len(known))
    if not leaked:
        return text, []
    seen = {(call.name, call.arguments) for call in known}
    fresh = [call for call in leaked if (call.name, call.arguments) not in seen]
    if len(fresh) < len(leaked):
        log.info("dropped %d leaked tool call(s) the host also sent as tool_calls", len(leaked) - len(fresh))
    ids = {call.id for call in known}
    return rest, [
        ToolCall(
            id=call.id if call.id not in ids else f"{call.id}.leaked",
            name=call.name,
            arguments=call.arguments,
        )
        for call in fresh
    ]


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
