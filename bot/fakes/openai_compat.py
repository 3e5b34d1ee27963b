"""A fake OpenAI Chat Completions API (`POST /v1/chat/completions`), with a Moonshot (Kimi) mode.

    with FakeOpenAI(moonshot=True) as fake:
        fake.script(Reply(thinking="plan", tool_calls=[ToolCall("read_file", {"path": "a.py"})]))
        client = openai.OpenAI(api_key="test", base_url=fake.base_url)  # base_url ends in /v1

Wire format as the `openai` SDK (3.57) parses it: `chat.completion` with `usage.prompt_tokens_details.
cached_tokens` and `completion_tokens_details.reasoning_tokens`; the stream is `chat.completion.chunk`s
(a first chunk with `role`, content deltas, `tool_calls` fragments keyed by `index` — id and name in the
first, argument text after), a chunk with `finish_reason`, a usage chunk with empty `choices` when
`stream_options.include_usage` is set, then `data: [DONE]`. Errors are `{"error": {"message", "type",
"param", "code"}}`. Assistant `reasoning_content` (message and delta) is an extra field the SDK keeps:
read it with `getattr`.

Moonshot mode adds what Kimi does differently, from Moonshot's docs and reported behaviour:
- thinking is on for kimi-k2.6 unless the body says `"thinking": {"type": "disabled"}` (SDK `extra_body`)
  (platform.kimi.ai/docs/guide/use-kimi-k2-thinking-model);
- with thinking on, every assistant message with `tool_calls` must carry `reasoning_content`, else
  400 "thinking is enabled but reasoning_content is missing in assistant tool call message at index N"
  (MoonshotAI/kimi-agent-sdk#169, iOfficeAI/AionUi#2746 for the `invalid_request_error` body);
  an empty string is accepted — projects fix the error by echoing "" (openclaw/openclaw#74846);
- `temperature` (1.0 thinking / 0.6 not), `top_p` 0.95, `n` 1, `presence_penalty` 0 and
  `frequency_penalty` 0 "cannot be modified" (platform.kimi.ai/docs/api/models-overview); other values
  get a 400 like "invalid temperature: only 1 is allowed for this model" (agent-zone.ai's Kimi K2.6
  quirks page), as does `tool_choice: "required"` with thinking on (same page);
- tool call ids look like `functions.read_file:0`; usage carries a top-level `cached_tokens`, and a
  stream's finishing chunk carries usage inside `choices[0].usage` (AstrBotDevs/AstrBot#6614,
  northes/go-moonshot#17) — besides the standard usage chunk when `include_usage` is asked for;
- error types are Moonshot's own (`invalid_authentication_error`, `rate_limit_reached_error`, …) and
  the body has no `param`/`code`. That table is recalled from Moonshot's error-code docs, which the
  stored corpus did not hold; treat the exact type strings as best effort.

Sloppy mode (issue 14) plays what Kimi hosts are reported to do, each at its own rate, from a seeded
random generator so a run replays exactly: `FakeOpenAI(sloppy=Sloppy(leak_markup=0.3, mixed_chunks=0.3,
drop_done=0.3, seed=7))`, or from the environment with `FakeOpenAI.from_env(os.environ)`:

    ARCHON_FAKE_OPENAI_SLOPPY="leak_markup=0.3,mixed_chunks=0.3,drop_done=0.3,seed=7"  # or "all=0.3"

- `leak_markup` (per reply with tool calls): the calls come as Kimi template markup at the end of
  `content` — `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>`
  `{…}<|tool_call_end|>…<|tool_calls_section_end|>` — with no `tool_calls` and `finish_reason: "stop"`,
  streamed (cut mid-token) or not, as a host whose tool parser missed the template sends them;
- `mixed_chunks` (per streamed call with JSON-object arguments): the arguments come as deltas *and*
  whole — either a last chunk repeating id, name and the full arguments, or a first chunk with the full
  arguments followed by deltas of them;
- `drop_done` (per stream): no `data: [DONE]` after the finishing (and usage) chunk; the body just ends.
  To have it hang instead, script `Reply(hang=…, hang_after_events=999)` as well.
`fake.quirks` lists what was played, one entry per call or stream (`leak_markup`, `mixed_chunks`,
`drop_done`), so a test can check each one was recovered.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Self

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

__all__ = ["Drop", "FakeOpenAI", "HttpError", "RecordedRequest", "Reply", "Sloppy", "ToolCall", "Usage"]

SLOPPY_ENV = "ARCHON_FAKE_OPENAI_SLOPPY"
KIMI_SECTION = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>")
KIMI_CALL = "<|tool_call_begin|>{id}<|tool_call_argument_begin|>{arguments}<|tool_call_end|>"

OPENAI_ERRORS = {  # status: (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
MOONSHOT_ERRORS = {
    400: "invalid_request_error",
    401: "invalid_authentication_error",
    403: "permission_denied_error",
    404: "resource_not_found_error",
    429: "rate_limit_reached_error",
    500: "server_error",
}
OPENAI_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
KIMI_FIXED = {"top_p": 0.95, "n": 1, "presence_penalty": 0, "frequency_penalty": 0}
KIMI_TEMPERATURE = {True: 1.0, False: 0.6}  # by whether thinking is on


@dataclass(frozen=True)
class Sloppy:
    """How often the fake makes each wire mistake (0 never, 1 always), and the seed that replays them."""

    leak_markup: float = 0.0
    mixed_chunks: float = 0.0
    drop_done: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> Self:
        """`leak_markup=0.3,mixed_chunks=0.3,drop_done=0.3,seed=7`; `all=R` sets every rate."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            names = ["leak_markup", "mixed_chunks", "drop_done"] if name.strip() == "all" else [name.strip()]
            if not sep or not set(names) <= {f.name for f in fields(cls)}:
                raise ValueError(f"{SLOPPY_ENV}: cannot read {item!r} (want NAME=RATE, names {fields(cls)})")
            for one in names:
                values[one] = int(value) if one == "seed" else float(value)
        return cls(**values)


class FakeOpenAI(FakeModelServer):
    """Chat Completions on a loopback port; `base_url` ends in `/v1`, like `https://api.moonshot.ai/v1`."""

    endpoint = "/v1/chat/completions"
    base_path = "/v1"

    def __init__(self, *, moonshot: bool = False, sloppy: Sloppy | None = None) -> None:
        super().__init__()
        self.moonshot = moonshot
        self.sloppy = sloppy or Sloppy()
        self.quirks: list[str] = []
        self._random = random.Random(self.sloppy.seed)
        self._random_lock = threading.Lock()
        self._tool_numbers = itertools.count()  # Kimi numbers calls: functions.name:0, :1, …

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, moonshot: bool = False) -> FakeOpenAI:
        """A fake as `ARCHON_FAKE_OPENAI_SLOPPY` asks (clean when it is unset or empty)."""
        return cls(moonshot=moonshot, sloppy=Sloppy.parse(environ.get(SLOPPY_ENV, "")))

    def validate(self, request: RecordedRequest) -> HttpError | None:
        checks = [_check_auth, _check_fields, _check_tool_messages]
        if self.moonshot:
            checks += [_check_kimi_thinking, _check_kimi_fixed_params, _check_kimi_reasoning]
        for check in checks:
            error = check(request)
            if error is not None:
                return error
        return None

    def error_body(self, error: HttpError) -> dict[str, Any]:
        if self.moonshot:
            kind = error.type or MOONSHOT_ERRORS.get(error.status, "server_error")
            return {"error": {"message": error.message or kind, "type": kind}}
        kind, code = OPENAI_ERRORS.get(error.status, ("server_error", None))
        message = error.message or f"The fake answered {error.status} ({kind})."
        return {
            "error": {
                "message": message,
                "type": error.type or kind,
                "param": error.param,
                "code": error.code or code,
            }
        }

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": new_id("req_", 32)}

    def message_body(self, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
        reply = self._maybe_leak(reply)
        choice = {
            "index": 0,
            "message": self._message(reply),
            "logprobs": None,
            "finish_reason": _finish_reason(reply),
        }
        head = _completion_head(request, "chat.completion")
        return {**head, "choices": [choice], "usage": self._usage(reply.usage)}

    def stream_events(self, reply: Reply, request: RecordedRequest) -> list[bytes]:
        reply = self._maybe_leak(reply)
        head = _completion_head(request, "chat.completion.chunk")
        with_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        if with_usage and not self.moonshot:
            head["usage"] = None  # OpenAI sends `usage: null` on every chunk but the last
        chunks = [_chunk(head, delta) for delta in self._deltas(reply)]
        chunks.append(_chunk(head, {}, _finish_reason(reply)))
        if self.moonshot:
            chunks[-1]["choices"][0]["usage"] = self._usage(reply.usage)
        if with_usage:
            chunks.append({**head, "choices": [], "usage": self._usage(reply.usage)})
        done = [] if self._roll("drop_done", self.sloppy.drop_done) else [sse("[DONE]")]
        return [sse(chunk) for chunk in chunks] + done

    # --- sloppiness ---------------------------------------------------------------------------------

    def _roll(self, quirk: str, rate: float, times: int = 1) -> bool:
        """Whether to make mistake `quirk` this time; noted in `quirks` (`times` entries) when so."""
        if rate <= 0:
            return False
        with self._random_lock:
            hit = self._random.random() < rate
            if hit:
                self.quirks.extend([quirk] * times)
        return hit

    def _maybe_leak(self, reply: Reply) -> Reply:
        """The reply with its tool calls written as Kimi markup into the text, as a sloppy host sends it."""
        calls = reply.tool_calls
        if not calls or not self._roll("leak_markup", self.sloppy.leak_markup, len(calls)):
            return reply
        ids = [f"functions.{call.name}:{next(self._tool_numbers)}" for call in calls]
        markup = "".join(
            KIMI_CALL.format(id=i, arguments=c.arguments) for i, c in zip(ids, calls, strict=True)
        )
        text = reply.text + KIMI_SECTION[0] + markup + KIMI_SECTION[1]
        return replace(reply, text=text, tool_calls=(), stop_reason=reply.stop_reason or "stop")

    def _argument_deltas(self, index: int, tool_id: str, call: ToolCall) -> list[dict[str, Any]]:
        """The opening fragment and the argument fragments of one streamed call (mixed, when sloppy)."""
        function = {"name": call.name, "arguments": ""}
        opening = {"index": index, "id": tool_id, "type": "function", "function": function}
        deltas = [
            {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
            for part in pieces(call.arguments)
        ]
        if not _is_object(call.arguments) or not self._roll("mixed_chunks", self.sloppy.mixed_chunks):
            return [{"tool_calls": [opening]}, *deltas]
        whole = {**opening, "function": {**function, "arguments": call.arguments}}
        with self._random_lock:
            whole_first = self._random.random() < 0.5
        if whole_first:
            return [{"tool_calls": [whole]}, *deltas]
        return [{"tool_calls": [opening]}, *deltas, {"tool_calls": [whole]}]

    # --- responses ----------------------------------------------------------------------------------

    def _message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if not self.moonshot:
            message |= {"refusal": None, "annotations": []}
        if reply.thinking is not None:
            message["reasoning_content"] = reply.thinking
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tool_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for tool_id, call in zip(self._tool_ids(reply), reply.tool_calls, strict=True)
            ]
        return message

    def _deltas(self, reply: Reply) -> list[dict[str, Any]]:
        """Role first, then reasoning, text, and each tool call (id and name, then argument fragments)."""
        first: dict[str, Any] = {"role": "assistant", "content": ""}
        deltas = [first if self.moonshot else {**first, "refusal": None}]
        deltas += [{"reasoning_content": part} for part in pieces(reply.thinking or "")]
        deltas += [{"content": part} for part in pieces(reply.text, 3 if "<|" not in reply.text else 7)]
        for index, (tool_id, call) in enumerate(zip(self._tool_ids(reply), reply.tool_calls, strict=True)):
            deltas += self._argument_deltas(index, tool_id, call)
        return deltas

    def _tool_ids(self, reply: Reply) -> list[str]:
        return [call.id or self._new_tool_id(call) for call in reply.tool_calls]

    def _new_tool_id(self, call: ToolCall) -> str:
        if not self.moonshot:
            return new_id("call_")
        return f"functions.{call.name}:{next(self._tool_numbers)}"

    def _usage(self, usage: Usage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        }
        if self.moonshot:
            body["cached_tokens"] = usage.cache_read_tokens
        return body


def _completion_head(request: RecordedRequest, kind: str) -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl-"),
        "object": kind,
        "created": int(time.time()),
        "model": request.body["model"],
        "system_fingerprint": "fp_fake0001",
    }


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        **head,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _is_object(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


def _finish_reason(reply: Reply) -> str:
    return reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")


# --- the contract -----------------------------------------------------------------------------------


def _invalid(message: str, param: str | None = None, code: str | None = None) -> HttpError:
    return HttpError(400, message, param=param, code=code)


def _check_auth(request: RecordedRequest) -> HttpError | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not key.strip():
        return HttpError(401, OPENAI_NO_KEY)
    return None


def _check_fields(request: RecordedRequest) -> HttpError | None:
    body = request.body
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _invalid("you must provide a model parameter")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return _invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    return None


def _check_tool_messages(request: RecordedRequest) -> HttpError | None:
    """A `tool` message answers a call of the assistant message before it; every call gets an answer."""
    open_calls: list[str] = []
    for index, message in enumerate(request.body["messages"]):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'.",
                    f"messages.[{index}].role",
                )
            open_calls.remove(message["tool_call_id"])
            continue
        if open_calls:
            return _invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(open_calls),
                f"messages.[{index}].role",
            )
        open_calls = (
            [call.get("id") for call in message.get("tool_calls") or []] if role == "assistant" else []
        )
    return None


def _thinking_on(body: dict[str, Any]) -> bool:
    return (body.get("thinking") or {}).get("type", "enabled") != "disabled"


def _check_kimi_thinking(request: RecordedRequest) -> HttpError | None:
    thinking = request.body.get("thinking")
    if thinking is not None and (
        not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled")
    ):
        return _invalid('invalid thinking: type must be "enabled" or "disabled"')
    if _thinking_on(request.body) and request.body.get("tool_choice") == "required":
        return _invalid('tool_choice "required" is not supported when thinking is enabled')
    return None


def _check_kimi_fixed_params(request: RecordedRequest) -> HttpError | None:
    fixed = {"temperature": KIMI_TEMPERATURE[_thinking_on(request.body)], **KIMI_FIXED}
    for name, allowed in fixed.items():
        value = request.body.get(name)
        if value is not None and value != allowed:
            return _invalid(f"invalid {name}: only {allowed:g} is allowed for this model")
    return None


def _check_kimi_reasoning(request: RecordedRequest) -> HttpError | None:
    if not _thinking_on(request.body):
        return None
    for index, message in enumerate(request.body["messages"]):
        has_calls = message.get("role") == "assistant" and message.get("tool_calls")
        if has_calls and not isinstance(message.get("reasoning_content"), str):
            return _invalid(
                "thinking is enabled but reasoning_content is missing in assistant tool call message "
                f"at index {index}"
            )
    return None
