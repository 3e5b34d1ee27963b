"""Hidden HTML markers on everything the bot writes, so a retried job edits instead of posting twice."""

from __future__ import annotations

import re

_MARKER = "<!-- archon-bot:{kind}:{key} -->"
_KEY = re.compile(r"^[A-Za-z0-9_.:#/-]+$")


def marker(kind: str, key: str) -> str:
    """`<!-- archon-bot:status:r1a2b3 -->`. Kind and key are ids, never user text."""
    if not _KEY.match(kind) or not _KEY.match(key):
        raise ValueError(f"marker parts must be plain ids, got {kind!r}, {key!r}")
    return _MARKER.format(kind=kind, key=key)


def with_marker(body: str, kind: str, key: str) -> str:
    return f"{body.rstrip()}\n\n{marker(kind, key)}\n"


def has_marker(body: str | None, kind: str, key: str) -> bool:
    return bool(body) and marker(kind, key) in body
