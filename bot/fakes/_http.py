"""What the model fakes share: scripted turns, request records, and a loopback HTTP server that plays them.

The official SDKs sit on `httpx2`, which respx does not intercept, so the fakes are real servers on
127.0.0.1 and the SDKs reach them through `base_url`. Each request is recorded, checked against the
provider's contract (a broken request is answered with the provider's own error shape and noted in
`violations`, without using up a scripted turn), then answered by the next scripted turn.

`http.server` rather than werkzeug: a fake has to write raw bytes when it likes — stall between two SSE
events, or drop the socket without a status line — and a WSGI app cannot.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import string
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A random id in the provider's style (`msg_…`, `toolu_…`, `chatcmpl-…`)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def pieces(text: str, count: int = 3) -> list[str]:
    """`text` cut into up to `count` parts, so a client must join deltas rather than read a single one."""
    if not text:
        return []
    size = -(-len(text) // count)
    return [text[start : start + size] for start in range(0, len(text), size)]


# --- scripted turns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One tool call the "model" makes: `input` as a dict, or `raw_arguments` to send broken JSON text."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = None
    id: str | None = None

    @property
    def arguments(self) -> str:
        """The arguments as JSON text, exactly as the wire carries them."""
        return self.raw_arguments if self.raw_arguments is not None else json.dumps(dict(self.input))


@dataclass(frozen=True)
class Usage:
    """Token counts, written verbatim into each provider's own fields.

    Anthropic: `input_tokens`, `output_tokens`, `cache_creation_input_tokens`, `cache_read_input_tokens`
    (and `output_tokens_details.thinking_tokens`). OpenAI: `prompt_tokens`, `completion_tokens`,
    `prompt_tokens_details.cached_tokens` (from `cache_read_tokens`) and
    `completion_tokens_details.reasoning_tokens`. Mind that OpenAI's prompt count includes cached tokens
    while Anthropic's input count does not; the fake copies numbers and does no arithmetic.
    """

    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """A successful answer: thinking, then text, then tool calls, in that order.

    `thinking` is an Anthropic `thinking` block (with `signature`, generated when not given) or, on the
    OpenAI wire, the assistant message's `reasoning_content`. `stop_reason` defaults to the provider's
    value for "tool calls" or "finished". `hang` seconds pass before the first byte — or, when streaming
    with `hang_after_events`, after that many SSE events — so a client timeout can fire.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    hang: float = 0.0
    hang_after_events: int = 0


@dataclass(frozen=True)
class HttpError:
    """An error answer in the provider's body shape; `type` defaults from the status (529 → overloaded).

    `retry_after` becomes the `retry-after` header (seconds; the SDKs accept fractions, keeping tests fast).
    """

    status: int
    message: str | None = None
    type: str | None = None
    retry_after: float | None = None
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer — after `after_events` SSE events when streaming."""

    after_events: int = 0


Turn = Reply | HttpError | Drop


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased, `body` is the parsed JSON."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


# --- the wire ---------------------------------------------------------------------------------------


class _Exchange:
    """One request/response on a connection, with the few ways a fake can answer it."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler

    def read(self) -> RecordedRequest:
        handler = self.handler
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {name.lower(): value for name, value in handler.headers.items()}
        return RecordedRequest(handler.command, handler.path.split("?")[0], headers, body)

    def send_json(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        payload = json.dumps(body).encode()
        self._head(
            status, {**headers, "content-type": "application/json", "content-length": str(len(payload))}
        )
        self.handler.wfile.write(payload)

    def open_stream(self, headers: Mapping[str, str]) -> None:
        """Status line and headers for an SSE body in chunked encoding, as the real APIs send it."""
        sse = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        self._head(200, {**headers, **sse, "transfer-encoding": "chunked"})

    def send_chunk(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def close_stream(self) -> None:
        self.handler.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Shut the socket: the client sees the server disconnect (no status line, or a cut-off body)."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def _head(self, status: int, headers: Mapping[str, str]) -> None:
        self.handler.send_response(status)
        for name, value in headers.items():
            self.handler.send_header(name, value)
        self.handler.end_headers()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    # TCP_NODELAY on each accepted socket: an SSE body goes out in many small writes, and with Nagle on
    # each write after the first waits for the client's delayed ACK (~40 ms a call on loopback), which
    # made every call through a fake look slow and hid what the code around it costs.
    disable_nagle_algorithm = True
    fake: ClassVar[FakeModelServer]

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, open_=True)

    def finish(self) -> None:
        self.fake._track(self.connection, open_=False)
        super().finish()

    def _answer(self) -> None:
        try:
            self.fake._serve(_Exchange(self))
        except OSError:  # the client went away (its timeout fired, or it closed a stream early)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: pytest shows `fake.requests` and `fake.violations` when something fails."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that reset idle keep-alive connections; loud about anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# --- the server -------------------------------------------------------------------------------------


class FakeModelServer:
    """A provider fake on a free loopback port. Subclasses know the wire format; this class plays turns.

    Use as a context manager; `script(*turns)` queues answers, `requests` and `violations` record what
    came in. A request that arrives with nothing scripted gets a 500 (with `x-should-retry: false`, so
    the SDK does not retry it) and an "unscripted request" violation.
    """

    endpoint: ClassVar[str]
    base_path: ClassVar[str] = ""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._turns: deque[Turn] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None

    # public surface

    def script(self, *turns: Turn) -> Self:
        """Queue answers, consumed one per valid request, in order."""
        with self._lock:
            self._turns.extend(turns)
        return self

    @property
    def pending(self) -> int:
        """Scripted turns not yet used."""
        return len(self._turns)

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    @property
    def port(self) -> int:
        assert self._server is not None, "start the fake first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Wake any hanging answer, stop listening, and cut connections still open."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # what a provider subclass supplies

    def validate(self, request: RecordedRequest) -> HttpError | None:
        """The first way `request` breaks the provider's contract, as the error the provider returns."""
        raise NotImplementedError

    def error_body(self, error: HttpError) -> dict[str, Any]:
        raise NotImplementedError

    def response_headers(self) -> dict[str, str]:
        return {}

    def message_body(self, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
        raise NotImplementedError

    def stream_events(self, reply: Reply, request: RecordedRequest) -> list[bytes]:
        """The SSE frames of `reply`, each a complete `event:`/`data:` record ending in a blank line."""
        raise NotImplementedError

    # playing a request

    def _serve(self, exchange: _Exchange) -> None:
        request = exchange.read()
        with self._lock:
            self.requests.append(request)
        rejection = self._reject(request)
        if rejection is not None:
            self._note(request, rejection.message or "")
            self._send_error(exchange, rejection)
            return
        turn = self._next_turn()
        if turn is None:
            self._note(request, "unscripted request")
            self._send_error(exchange, self._unscripted())
        elif isinstance(turn, HttpError):
            self._send_error(exchange, turn)
        elif isinstance(turn, Drop):
            self._drop(exchange, turn, request)
        elif request.stream:
            self._stream(exchange, turn, request)
        elif not self._wait(turn.hang):
            exchange.send_json(200, self.message_body(turn, request), self.response_headers())

    def _reject(self, request: RecordedRequest) -> HttpError | None:
        if request.method != "POST" or request.path != self.endpoint:
            return HttpError(
                404, f"Not found: {request.method} {request.path} (the fake serves {self.endpoint})"
            )
        if not isinstance(request.body, dict):
            return HttpError(400, "The request body is not valid JSON.")
        return self.validate(request)

    def _unscripted(self) -> HttpError:
        message = "Fake model: unscripted request (the script ran out; queue more turns with fake.script())"
        return HttpError(500, message, headers={"x-should-retry": "false"})

    def _send_error(self, exchange: _Exchange, error: HttpError) -> None:
        headers = {**self.response_headers(), **error.headers}
        if error.retry_after is not None:
            headers["retry-after"] = f"{error.retry_after:g}"
        exchange.send_json(error.status, self.error_body(error), headers)

    def _stream(self, exchange: _Exchange, reply: Reply, request: RecordedRequest) -> None:
        events = self.stream_events(reply, request)
        split = reply.hang_after_events if reply.hang else 0
        if split == 0 and self._wait(reply.hang):
            return
        exchange.open_stream(self.response_headers())
        for event in events[:split]:
            exchange.send_chunk(event)
        if split and self._wait(reply.hang):
            return
        for event in events[split:]:
            exchange.send_chunk(event)
        exchange.close_stream()

    def _drop(self, exchange: _Exchange, drop: Drop, request: RecordedRequest) -> None:
        if request.stream and drop.after_events:
            exchange.open_stream(self.response_headers())
            for event in self.stream_events(Reply(text="cut off"), request)[: drop.after_events]:
                exchange.send_chunk(event)
        exchange.drop()

    def _next_turn(self) -> Turn | None:
        with self._lock:
            return self._turns.popleft() if self._turns else None

    def _note(self, request: RecordedRequest, problem: str) -> None:
        with self._lock:
            self.violations.append(f"{request.method} {request.path}: {problem}")

    def _wait(self, seconds: float) -> bool:
        """Sleep, unless the fake is stopping; True means stop answering."""
        return self._closing.wait(seconds) if seconds > 0 else self._closing.is_set()

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: an optional `event:` line, one `data:` line, a blank line."""
    head = f"event: {event}\n" if event else ""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {text}\n\n".encode()
