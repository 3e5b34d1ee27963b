"""Logging for every process of the bot: one stderr handler, text or JSON lines, ids on every record.

A job runs for minutes and logs from many modules; `log_context(delivery_id=…, job_id=…, run_id=…)`
puts those ids in a context variable, and a filter on the handler copies them onto every record made
inside the block, whichever logger made it. Text lines end with `[delivery_id=… run_id=…]`; JSON lines
carry them as keys, so a log store can find one run's lines without parsing messages.

`logging_config` is a `logging.config.dictConfig` dictionary, so the CLI, gunicorn (`logconfig_dict` in
bot/gunicorn_conf.py) and RQ's workers (which add no handler of their own once the root has one) all
write the same format, each record redacted by bot/secrets.py on the way out.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: The ids `log_context` knows; others given to it are kept too, but these are the documented ones.
CONTEXT_FIELDS = ("delivery_id", "job_id", "run_id")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s%(context)s"
#: Loggers that keep handlers of their own unless told otherwise (gunicorn's) or may be given some.
_OWN_HANDLER_LOGGERS = ("gunicorn.error", "gunicorn.access", "rq.worker", "rq.job")

#: Immutable by convention: `log_context` replaces the mapping rather than changing it.
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("archon_log_context", default=_EMPTY)


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Add ids (None values are skipped) to every log record made inside the block; blocks nest."""
    added = {name: str(value) for name, value in ids.items() if value is not None}
    token = _context.set({**_context.get(), **added})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The ids in force here (a copy)."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record, and a ready-made `context` suffix for text lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_context()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ids.get(name))
        record.context = (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]") if ids else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context's ids, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(current_context())
        payload.update({n: getattr(record, n) for n in CONTEXT_FIELDS if getattr(record, n, None)})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        return json.dumps(payload, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not when logging was configured:
    a process that swaps stderr later (a test runner's capture, a daemonising wrapper) keeps its logs
    and never writes to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def logging_config(level: str = "INFO", log_format: LogFormat = "text") -> dict[str, Any]:
    """A dictConfig for the whole process: the root logger writes to stderr; gunicorn's and RQ's
    loggers propagate to it instead of keeping their own handlers, so every line has one format."""
    formatter: dict[str, Any] = (
        {"()": "bot.logs.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "bot.logs.ContextFilter"},
            "redact": {"()": "bot.secrets.RedactingFilter"},
        },
        "formatters": {"archon": formatter},
        "handlers": {
            "stderr": {
                "class": "bot.logs.StderrHandler",
                "formatter": "archon",
                "filters": ["redact", "context"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"handlers": [], "propagate": True} for name in _OWN_HANDLER_LOGGERS},
    }


def setup_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Configure this process's logging (idempotent) and redact every record it makes."""
    from bot.secrets import install_log_redaction

    logging.config.dictConfig(logging_config(level, log_format))
    install_log_redaction()
