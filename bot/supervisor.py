"""Child processes for `archon-bot worker` and `serve`: start them, forward signals, fail together.

If one child dies the others are stopped and the parent exits with the child's code, so a process
manager (Heroku, systemd, Kubernetes) restarts the whole unit instead of running half a bot.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, env: Mapping[str, str] | None = None, log_dir: Path | None = None) -> None:
        """`log_dir`: write each child's output to `<name>.log` there instead of this terminal."""
        self.env = dict(env if env is not None else os.environ)
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stopping = False

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        log.info("starting %s: %s", name, " ".join(argv))
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{name}.log").open("ab")
        child = subprocess.Popen(
            list(argv), env=self.env, stdout=output, stderr=subprocess.STDOUT if output else None
        )
        self.children.append((name, child))

    def exited(self) -> str | None:
        """The name of a child that has exited, if any."""
        return next((name for name, child in self.children if child.poll() is not None), None)

    def spawn_cli(self, name: str, *args: str) -> None:
        """Start `archon-bot ARGS` with this interpreter (works without the console script on PATH)."""
        self.spawn(name, [sys.executable, "-m", "bot.cli", *args])

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True
        for _, child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def wait(self) -> int:
        """Block until a child exits (or a signal arrives); then stop the rest. Returns the exit code."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        code = 0
        while not self._stopping:
            exited = [(name, child.returncode) for name, child in self.children if child.poll() is not None]
            if exited:
                name, code = exited[0]
                log.error("%s exited with code %s; stopping the others", name, code)
                break
            time.sleep(0.2)
        self.stop()
        return code or 0

    def stop(self, timeout: float = 20.0) -> None:
        for _, child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + timeout
        for _, child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
