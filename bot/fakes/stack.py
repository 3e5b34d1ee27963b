"""The whole bot on one machine, on local fakes: a private Redis, the fake GitHub, and the real web and
worker processes started the way the Procfile starts them (gunicorn serving the app factory, and
`archon-bot worker`). The demo and the end-to-end tests use it; nothing reaches the network.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot import sample_repo
from bot.fakes.github import FakeGitHub
from bot.redis_server import RedisServer, free_port
from bot.supervisor import Supervisor


def app_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) for a throwaway App: the fake verifies JWTs with the public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class LocalStack:
    """Start with `with LocalStack() as stack:`; deliveries go to `stack.webhook_url`."""

    app_id: int = 4242
    openapi: Path | None = None
    github_prefix: str = ""
    run_workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    quiet: bool = True
    scripted: bool = True  # model aliases answer from the bundled demo scripts (no keys needed)

    def __post_init__(self) -> None:
        self.secret = secrets.token_hex(16)
        self.private_key, public_key = app_key_pair()
        self.github = FakeGitHub(self.app_id, public_key, prefix=self.github_prefix, openapi=self.openapi)
        self._tmp = tempfile.TemporaryDirectory(prefix="archon-stack-")
        self.data_dir = Path(self._tmp.name)
        self.redis = RedisServer()
        self.port = free_port()
        self.supervisor: Supervisor | None = None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def logs(self) -> str:
        """The web and worker output (for a failing test's report)."""
        files = sorted(self.log_dir.glob("*.log")) if self.log_dir.is_dir() else []
        return "\n".join(f"===== {f.name}\n{f.read_text(errors='replace')}" for f in files)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhook"

    def env(self) -> dict[str, str]:
        """Exactly the variables `.env.example` documents, as an operator would set them."""
        return {
            **os.environ,
            "GITHUB_APP_ID": str(self.app_id),
            "GITHUB_PRIVATE_KEY": self.private_key,
            "GITHUB_WEBHOOK_SECRET": self.secret,
            "GITHUB_API_URL": self.github.api_url,
            "GITHUB_GIT_URL": f"file://{self.data_dir / 'remotes'}",
            "GITHUB_WRITE_INTERVAL": "0",
            "GITHUB_REQUEST_INTERVAL": "0",
            "REDIS_URL": self.redis.url,
            "ARCHON_DATA_DIR": str(self.data_dir / "data"),
            "ARCHON_ENV_FILE": "",
            "PORT": str(self.port),
            **({"ARCHON_MODELS_FILE": str(self.models_file)} if self.scripted else {}),
            **self.extra_env,
        }

    @property
    def remotes(self) -> Path:
        return self.data_dir / "remotes"

    @property
    def models_file(self) -> Path:
        return self.data_dir / "models.yml"

    def add_sample_repo(
        self,
        full_name: str = sample_repo.REPO,
        *,
        installation: int = 1,
        collaborators: dict[str, str] | None = None,
        issue: int = 1,
    ) -> Path:
        """The sample repository (a real bug, a failing test) as a bare remote the bot pushes to, known
        to the fake GitHub with its config file and an issue describing the bug."""
        for old in (self.remotes / f"{full_name}.git", self.remotes / ".work" / full_name):
            shutil.rmtree(old, ignore_errors=True)  # a reset fake GitHub starts from a fresh remote too
        bare = sample_repo.create_bare_remote(self.remotes, full_name)
        config = {".github/archon.yml": sample_repo.FILES[".github/archon.yml"]}
        self.github.add_repo(
            full_name,
            installation=installation,
            collaborators=collaborators or {},
            files=config,
            git_dir=bare,
        )
        self.github.add_issue(full_name, issue, title=sample_repo.ISSUE_TITLE, body=sample_repo.ISSUE_BODY)
        return bare

    def start(self) -> LocalStack:
        if self.scripted:
            sample_repo.write_models_file(self.models_file)
        self.github.start()
        self.redis.start()
        self.supervisor = Supervisor(self.env(), log_dir=self.log_dir if self.quiet else None)
        self.supervisor.spawn_cli("worker", "worker", "--run-workers", str(self.run_workers))
        self.supervisor.spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "bot.web:create_app()",
            ],
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.supervisor is not None
            if dead := self.supervisor.exited():
                raise RuntimeError(f"{dead} exited while starting; see its output above")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass  # refused, reset, or a read timeout while gunicorn still imports: not yet healthy
            time.sleep(0.2)
        raise TimeoutError(f"the web process did not become healthy within {timeout}s")

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.redis.stop()
        self.github.stop()
        self._tmp.cleanup()

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def deliver(
        self, event: str, payload: dict[str, Any], delivery: str | None = None, secret: str | None = None
    ) -> requests.Response:
        """POST a delivery signed the way GitHub signs it."""
        from bot.web import sign

        body = _encode(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/local",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or secrets.token_hex(16),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-Hub-Signature-256": sign((secret or self.secret).encode(), body),
        }
        return requests.post(self.webhook_url, data=body, headers=headers, timeout=10)


def _encode(payload: dict[str, Any]) -> bytes:
    import json

    return json.dumps(payload).encode()
