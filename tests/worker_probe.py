"""A job function for tests/test_worker_preload.py, run by a real worker's work-horse: it imports nothing
of the bot, so what it sees in `sys.modules` is what the worker had loaded before it forked."""

from __future__ import annotations

import sys


def modules_loaded(*names: str) -> dict[str, bool]:
    return {name: name in sys.modules for name in names}
