"""Which commands check a change, when `.github/archon.yml` does not say: a thin wrapper over
`bot.validation.detect`, kept for the callers that still take a plain list of shell commands."""

from __future__ import annotations

import re
from pathlib import Path

from bot.validation.detect import detect


def detect_commands(root: Path) -> list[str]:
    """The detected plan's test commands; empty when nothing is recognisable. These callers run commands
    without the plan's virtualenv, where `python` may not exist (Debian has only `python3`), so the
    interpreter is named `python3` here."""
    return [re.sub(r"^python ", "python3 ", command) for command in detect(root).commands]
