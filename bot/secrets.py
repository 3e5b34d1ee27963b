"""Secrets never leave the process in the clear, and a change that adds one is never pushed.

Secrets reach the bot three ways that no single adapter sees: the environment, a `.env` file (which
pydantic-settings reads into `Settings`, never into `os.environ`, so scanning the environment misses it),
and values minted at run time (installation tokens, refreshed by PyGithub every hour). A `Redactor`
knows all three: `Redactor.from_settings` takes every `SecretStr` field (found from the model, so a new
field is covered without anyone remembering to list it), the App's PEM key and each of its lines, and
credentials inside URLs; every `Redactor` also consults the process-wide registry that
`register_secret` fills, so a token minted after start-up is redacted by redactors built before it.

A secret leaks encoded as often as raw (a `git` header is base64, a URL is percent-encoded, JSON escapes
quotes), so each value is matched in its common encodings too, longest first.

Entry points call `install(Redactor.from_settings(settings))` once; adapters (the transcript, the run
store, the GitHub writer, the log filter) use `default_redactor()`, so nobody threads a redactor through
constructors. `scan_diff` is the last line of defence before `git push`: known secrets and generic
credential shapes in added lines, reported by file and line, never by value.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from bot.settings import ConfigurationError, Settings

REDACTED = "[REDACTED]"
#: Shorter values are trivia ("true", a port): redacting them would shred ordinary text.
MIN_SECRET_CHARS = 8
#: Environment variables whose values are secrets even when `Settings` does not know them.
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE", re.IGNORECASE)
#: ...except those naming where a secret lives, not the secret (`GITHUB_PRIVATE_KEY_PATH`).
_LOCATION_SUFFIXES = ("_PATH", "_FILE", "_DIR")
#: Installation tokens live an hour; the registry keeps the newest this many, so it cannot grow forever.
REGISTRY_CAP = 512
_BASIC_AUTH_USER = "x-access-token:"
_URLSAFE = str.maketrans("+/", "-_")
_PEM_ARMOUR = re.compile(r"-----(?:BEGIN|END) [A-Z0-9 ]+-----")


# --- The process-wide registry of values minted at run time. ---------------------------------------


class _Registry:
    """Values added while the process runs, with their forms computed once; `version` lets redactors
    cache their sorted forms."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: dict[str, frozenset[str]] = {}  # insertion-ordered: the oldest is evicted first
        self.version = 0

    def add(self, value: str) -> None:
        forms = frozenset(all_forms(value))
        with self._lock:
            if value in self._forms:
                return
            self._forms[value] = forms
            while len(self._forms) > REGISTRY_CAP:
                del self._forms[next(iter(self._forms))]
            self.version += 1

    def forms(self) -> set[str]:
        with self._lock:
            return set().union(*self._forms.values())


_registry = _Registry()


def register_secret(value: str | None) -> str | None:
    """Make a value minted at run time (an installation token) redacted by every `Redactor` here.

    Returns the value, so token code can wrap what it hands out: `lambda: register_secret(auth.token)`.
    """
    if value and len(value) >= MIN_SECRET_CHARS:
        _registry.add(value)
    return value


# --- Encodings: what a secret looks like once it has been through a header, a URL or JSON. ----------


def secret_pieces(value: str) -> set[str]:
    """The value and each of its lines: a PEM key leaks line by line, and `.env` files often hold
    it with literal `\\n` escapes. PEM armour lines (`-----BEGIN ...`) are public, so they are left out."""
    lines = value.replace("\\n", "\n").splitlines()
    pieces = {value.strip(), *(line.strip() for line in lines)}
    return {p for p in pieces if len(p) >= MIN_SECRET_CHARS and not _PEM_ARMOUR.fullmatch(p)}


def _b64_middle(raw: bytes, offset: int) -> str:
    """The base64 characters that depend only on `raw` when it sits `offset` bytes (mod 3) into a
    longer blob: the first and last characters also carry bits of the neighbours, so they are cut."""
    encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
    start = -(-8 * offset // 6)  # ceil: skip characters holding prefix bits
    end = 8 * (offset + len(raw)) // 6  # floor: keep only characters wholly inside the value
    return encoded[start:end]


def _base64_forms(raw: bytes) -> set[str]:
    standard = {base64.b64encode(raw).decode(), *(_b64_middle(raw, k) for k in range(3))}
    standard.add(base64.b64encode(_BASIC_AUTH_USER.encode() + raw).decode())  # git's auth header
    return standard | {form.translate(_URLSAFE) for form in standard}


def encoded_forms(piece: str) -> set[str]:
    """The piece as it appears raw, reversed, in base64 (any alignment, standard or URL-safe), hex,
    percent-encoding, a JSON string, and git's `x-access-token` basic-auth header."""
    raw = piece.encode()
    forms = {piece, piece[::-1], raw.hex(), raw.hex().upper(), json.dumps(piece)[1:-1]}
    forms |= {quote(piece, safe=""), quote(piece), quote_plus(piece)}
    forms |= _base64_forms(raw)
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def all_forms(value: str) -> set[str]:
    """Every form of every piece of a secret value."""
    return {form for piece in secret_pieces(value) for form in encoded_forms(piece)}


# --- Where secrets come from. ---------------------------------------------------------------------


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret `Settings` holds, found from its fields rather than listed by hand."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, SecretBytes):
            values.append(value.get_secret_value().decode("utf-8", "replace"))
        elif isinstance(value, str) and (password := _url_password(value)):
            values.append(password)
    return values + _private_key(settings)


def _url_password(value: str) -> str | None:
    """The password of `redis://:pw@host` and the like; None for anything that is not such a URL."""
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def _private_key(settings: Settings) -> list[str]:
    """The PEM (inline or from its file) and its base64 body as one line, as it appears unwrapped."""
    try:
        pem = settings.private_key_pem()
    except (ConfigurationError, OSError):
        return []  # no key configured, or an unreadable file: the command that needs it says so
    body = "".join(line.strip() for line in pem.splitlines() if not line.startswith("-----"))
    return [pem, body]


def environ_secrets(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-looking variables, for secrets `Settings` has no field for."""
    return [
        value
        for name, value in environ.items()
        if SECRET_ENV_NAME.search(name) and not name.upper().endswith(_LOCATION_SUFFIXES)
    ]


# --- The redactor. --------------------------------------------------------------------------------


class Redactor:
    """Replaces known secrets, in all their encodings, with `REDACTED`. Thread-safe."""

    def __init__(self, values: Iterable[str] = (), *, use_registry: bool = True) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._version = 0
        self._use_registry = use_registry
        self._sorted: tuple[tuple[int, int], tuple[str, ...]] = ((-1, -1), ())
        for value in values:
            self.add(value)

    @classmethod
    def from_settings(
        cls, settings: Settings, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
    ) -> Redactor:
        """Everything the deployment knows: `Settings`' secrets, secret-looking environment variables
        (`os.environ` unless given), and `extra`."""
        env = os.environ if environ is None else environ
        return cls([*settings_secrets(settings), *environ_secrets(env), *extra])

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """When settings cannot be built (invalid configuration): the environment's secrets at least."""
        return cls(environ_secrets(os.environ if environ is None else environ))

    def add(self, value: str | None) -> None:
        """Redact this value too (and its pieces and encodings) from now on."""
        if not value:
            return
        forms = all_forms(value)
        with self._lock:
            self._forms |= forms
            self._version += 1

    def forms(self) -> tuple[str, ...]:
        """Every form to replace, longest first, so a secret's long encoding goes before its parts."""
        key = (self._version, _registry.version if self._use_registry else 0)
        cached_key, cached = self._sorted
        if cached_key == key:
            return cached
        with self._lock:
            forms = set(self._forms)
        if self._use_registry:
            forms |= _registry.forms()
        ordered = tuple(sorted(forms, key=len, reverse=True))
        self._sorted = (key, ordered)
        return ordered

    def redact(self, text: str) -> str:
        for form in self.forms():
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def contains_secret(self, text: str) -> bool:
        return any(form in text for form in self.forms())

    def redact_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings; models are dumped) with every string
        redacted, keys included. One search over its JSON text first: most records hold no secret."""
        if isinstance(obj, BaseModel):
            obj = obj.model_dump(mode="json")
        if not self.contains_secret(json.dumps(obj, ensure_ascii=False, default=str)):
            return obj
        return self._walk(obj)

    def _walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, BaseModel):
            return self._walk(obj.model_dump(mode="json"))
        if isinstance(obj, Mapping):
            return {self._walk(key): self._walk(value) for key, value in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._walk(item) for item in obj]
        return obj


# --- The process default. -------------------------------------------------------------------------

_default: Redactor | None = None
_fallback: Redactor | None = None


def install(redactor: Redactor | None) -> None:
    """Make `redactor` the process default (entry points, after loading settings); None resets it."""
    global _default
    _default = redactor


def default_redactor() -> Redactor:
    """The installed redactor; before any `install`, one from the environment and the registry, so an
    adapter used outside an entry point (a test, a script) still redacts what it can know."""
    global _fallback
    if _default is not None:
        return _default
    if _fallback is None:
        _fallback = Redactor.from_environ()
    return _fallback


def redact(text: str) -> str:
    """`default_redactor().redact(text)`, for callers with a string in hand."""
    return default_redactor().redact(text)


def describe_error(error: BaseException | None, limit: int = 300) -> str:
    """An exception as one short line for people, redacted *before* it is cut: a cut through a secret
    would leave a fragment no redactor recognises."""
    if error is None:
        return "unknown error"
    text = " ".join(redact(str(error)).split()) or "no message"
    return f"{type(error).__name__}: {text}"[:limit]


# --- Logs. ----------------------------------------------------------------------------------------


def redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    """Redact a record in place: the formatted message (args are merged in, since a secret is usually
    an argument), the exception text and the stack. The exception itself is dropped once rendered, so
    no handler can render it again unredacted."""
    record.msg, record.args = redactor.redact(_message(record)), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    record.exc_info = None
    if record.exc_text:
        record.exc_text = redactor.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):  # arguments that do not fit the format: keep both, redacted
        return f"{record.msg} {record.args!r}"


class RedactingFilter(logging.Filter):
    """Handler filter; with no redactor it uses the process default at each record."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.redactor or default_redactor())
        return True


#: Loggers that own handlers instead of propagating to the root (gunicorn's) or add them later (RQ's).
_HANDLER_LOGGERS = ("", "gunicorn.error", "gunicorn.access", "rq.worker")
_filter = RedactingFilter()
_base_factory: Any = None


def install_log_redaction(redactor: Redactor | None = None) -> None:
    """Redact every log record of the process. Two layers: the record factory redacts each record as
    it is made, whichever logger or handler (even ones added later, as RQ's worker does) sees it; a
    filter on the existing handlers also catches records built without the factory (`makeLogRecord`
    from a queue or socket). Idempotent; `redactor=None` follows `install`."""
    global _base_factory
    _filter.redactor = redactor
    if _base_factory is None:
        _base_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)
    for name in _HANDLER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _filter not in handler.filters:
                handler.addFilter(_filter)


def remove_log_redaction() -> None:
    """Undo `install_log_redaction` (tests, and embedders that own the process's logging)."""
    global _base_factory
    if _base_factory is not None:
        logging.setLogRecordFactory(_base_factory)
        _base_factory = None
    for name in _HANDLER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.removeFilter(_filter)


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    _filter.filter(record)
    return record


# --- Diffs: nothing that adds a secret is pushed. --------------------------------------------------


@dataclass(frozen=True)
class SecretFinding:
    """Where a secret was added. Deliberately without the value: findings go into comments and logs."""

    path: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.kind})"


#: Credential shapes with their real prefixes, lengths and alphabets, so ordinary code is not flagged.
CREDENTIAL_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,251}\b")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[a-z]+[0-9]{2}-[A-Za-z0-9_-]{80,}")),
    ("API key (sk-)", re.compile(r"\bsk-(?!ant-)(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{32,}")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Slack token", re.compile(r"\bxox[baprs]-[0-9]{6,}-[0-9A-Za-z-]{8,}")),
)


class SecretInDiffError(RuntimeError):
    """A change adds a secret; the message names where (file:line and kind), never the value."""

    def __init__(self, findings: list[SecretFinding]) -> None:
        self.findings = findings
        where = ", ".join(str(f) for f in findings[:10]) + (" …" if len(findings) > 10 else "")
        super().__init__(f"the change adds what looks like a secret, so it was not pushed: {where}")


def line_findings(text: str, redactor: Redactor) -> list[str]:
    """Kinds of secret in one line of text: a known secret (any encoding), then generic shapes."""
    kinds = ["known secret"] if redactor.contains_secret(text) else []
    return kinds + [kind for kind, shape in CREDENTIAL_SHAPES if shape.search(text)]


def scan_diff(diff_text: str, redactor: Redactor | None = None) -> list[SecretFinding]:
    """Secrets in the *added* lines of a unified diff. Removed and context lines are not the change's
    doing (removing a leaked key must stay possible), so they are never reported."""
    redactor = redactor or default_redactor()
    return [
        SecretFinding(path, number, kind)
        for path, number, text in _added_lines(diff_text)
        for kind in line_findings(text, redactor)
    ]


def _added_lines(diff_text: str) -> Iterable[tuple[str, int, str]]:
    try:
        patch = PatchSet(diff_text)
    except UnidiffParseError:
        return _raw_added_lines(diff_text)
    if not patch:  # no file headers unidiff recognises: scan it raw rather than not at all
        return _raw_added_lines(diff_text)
    return [
        (patched.path, line.target_line_no or 0, line.value.rstrip("\n"))
        for patched in patch
        for hunk in patched
        for line in hunk
        if line.is_added
    ]


def _raw_added_lines(diff_text: str) -> list[tuple[str, int, str]]:
    """A diff unidiff cannot parse is still scanned, conservatively: every `+` line, by diff line."""
    return [
        ("(unparsed diff)", number, line[1:])
        for number, line in enumerate(diff_text.splitlines(), start=1)
        if line.startswith("+") and not line.startswith("+++ ")
    ]


def ensure_no_secrets(diff_text: str, redactor: Redactor | None = None) -> None:
    """Raise `SecretInDiffError` when the diff adds a secret: call it before every `git push`."""
    findings = scan_diff(diff_text, redactor)
    if findings:
        raise SecretInDiffError(findings)
