"""Helpers shared by the tests: GitHub's example payloads, signing, and App keys."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from bot.fakes.stack import app_key_pair
from bot.workspace import Worktree

DATA = Path(__file__).parent / "data" / "github"
WEBHOOKS = DATA / "webhooks"
OPENAPI = DATA / "openapi-subset.json"
SECRET = "test-webhook-secret"
APP_ID = 4242
INSTALLATION_ID = 777
REPO = "Codertocat/Hello-World"  # the repository of the example payloads


@cache
def _example(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOKS / f"{name}.json").read_text())


def example(name: str, *, installation: int | None = INSTALLATION_ID) -> dict[str, Any]:
    """A fresh copy of one of GitHub's example payloads (`@octokit/webhooks-examples`).

    GitHub adds `installation` to every delivery it sends to an App; the examples were captured from
    repository webhooks, so we add it the way GitHub does.
    """
    payload = copy.deepcopy(_example(name))
    if installation is not None:
        payload["installation"] = {"id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc3"}
    return payload


def labeled(label: str, *, others: tuple[str, ...] = (), sender: str = "maintainer") -> dict[str, Any]:
    payload = example("issues.labeled")
    template = payload["label"]
    payload["label"] = {**template, "name": label}
    payload["issue"]["labels"] = [{**template, "name": name} for name in (*others, label)]
    payload["sender"] = {**payload["sender"], "login": sender}
    return payload


def commented(body: str, *, sender: str = "maintainer", pull_request: bool = False) -> dict[str, Any]:
    payload = example("issue_comment.created")
    payload["comment"]["body"] = body
    payload["comment"]["user"] = {**payload["comment"]["user"], "login": sender}
    payload["sender"] = {**payload["sender"], "login": sender}
    if pull_request:
        repo_url = payload["repository"]["url"]
        number = payload["issue"]["number"]
        payload["issue"]["pull_request"] = {
            "url": f"{repo_url}/pulls/{number}",
            "html_url": f"{payload['repository']['html_url']}/pull/{number}",
            "diff_url": f"{payload['repository']['html_url']}/pull/{number}.diff",
            "patch_url": f"{payload['repository']['html_url']}/pull/{number}.patch",
        }
    return payload


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(event: str, body: bytes, *, delivery: str | None = None, secret: str = SECRET) -> dict:
    """Headers GitHub sends with a delivery."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(APP_ID),
        "X-Hub-Signature-256": sign(body, secret),
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@cache
def app_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a test App key, made once per test session."""
    return app_key_pair()


def installed(event: str = "installation.created") -> dict[str, Any]:
    """An installation event as GitHub sends it to *this* App."""
    payload = example(event, installation=None)
    payload["installation"] = {**payload["installation"], "id": INSTALLATION_ID, "app_id": APP_ID}
    return payload


#: The repository and token the workspace tests use (`prepare` in conftest.py).
GIT_REPO = "owner/repo"
GIT_TOKEN = "ghs_SECRET123"
Prepare = Callable[..., Worktree]
