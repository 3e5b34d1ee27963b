"""End to end: gunicorn serving the app factory and a separate `archon-bot worker` process, a real
Redis, and the fake GitHub (validating every request against GitHub's OpenAPI description).
GitHub's own example payloads, signed, go in over HTTP; what comes out is read from the fake GitHub.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from bot import sample_repo
from bot.fakes.github import FakeGitHub
from bot.fakes.stack import LocalStack
from bot.redis_server import free_port
from tests.support import (
    APP_ID,
    INSTALLATION_ID,
    OPENAPI,
    REPO,
    SECRET,
    app_key,
    commented,
    delivery_headers,
    encode,
    labeled,
)


@pytest.fixture(scope="module", params=["", "/api/v3"], ids=["github.com", "enterprise-server"])
def stack(request) -> Iterator[LocalStack]:
    with LocalStack(openapi=OPENAPI, github_prefix=request.param) as stack:
        yield stack


@pytest.fixture
def github(stack: LocalStack) -> Iterator:
    gh = stack.github
    gh.reset()
    stack.add_sample_repo(
        REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "admin", "reader": "read"}
    )
    yield gh
    print(stack.logs())  # pytest shows captured output only when the test fails
    assert gh.violations == []


def status_comment(gh) -> dict | None:
    found = [c for c in gh.comments(REPO, 1) if "archon-bot:status:" in c["body"]]
    return found[0] if found else None


def test_signed_label_to_status_comment(stack: LocalStack, github) -> None:
    answer = stack.deliver("issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["jobs"] == [f"triage-{answer.json()['delivery']}-0"]
    github.wait_for(lambda: github.reactions(REPO, 1) == ["eyes"])
    first = github.wait_for(lambda: status_comment(github))
    assert "plan-opus impl-kimi" in first["body"]
    # the run worker picks the run up and edits the same comment to its final state
    done = github.wait_for(lambda: (c := status_comment(github)) and "Done" in c["body"] and c, timeout=60)
    assert done["id"] == first["id"]
    [pull] = github.pulls(REPO)
    assert pull["draft"] and pull["html_url"] in done["body"]
    assert [c["body"].count("archon-bot:plan:") for c in github.comments(REPO, 1)] == [0, 1]


def test_redelivery_is_not_queued_twice(stack: LocalStack, github) -> None:
    payload = commented("/archon help", sender="reader")
    github.add_comment(REPO, 1, "/archon help", author="reader", comment_id=payload["comment"]["id"])
    first = stack.deliver("issue_comment", payload, delivery="same-delivery")
    again = stack.deliver("issue_comment", payload, delivery="same-delivery")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    github.wait_for(lambda: any("here is what I understand" in c["body"] for c in github.comments(REPO, 1)))
    assert len(github.comments(REPO, 1)) == 2  # the command and one reply


def test_bad_signature_is_refused(stack: LocalStack, github) -> None:
    answer = stack.deliver(
        "issues", labeled("archon:plan-opus impl-kimi"), delivery="forged", secret="not-the-secret"
    )
    assert answer.status_code == 401
    assert not redis.Redis.from_url(stack.redis.url).exists("archon:delivery:forged")


def test_serve_runs_the_whole_bot_with_an_embedded_redis(tmp_path) -> None:
    """`archon-bot serve` with REDIS_URL unset: embedded Redis, workers and web from one command."""
    private, public = app_key()
    port = free_port()
    with FakeGitHub(APP_ID, public, openapi=OPENAPI) as gh:
        bare = sample_repo.create_bare_remote(tmp_path / "remotes", REPO)
        gh.add_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "write"}, git_dir=bare)
        gh.add_issue(REPO, 1, title=sample_repo.ISSUE_TITLE)
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["GITHUB_GIT_URL"] = f"file://{tmp_path / 'remotes'}"
        env["ARCHON_MODELS_FILE"] = str(sample_repo.write_models_file(tmp_path / "models.yml"))
        env.update(
            GITHUB_APP_ID=str(APP_ID),
            GITHUB_PRIVATE_KEY=private,
            GITHUB_WEBHOOK_SECRET=SECRET,
            GITHUB_API_URL=gh.api_url,
            GITHUB_WRITE_INTERVAL="0",
            GITHUB_REQUEST_INTERVAL="0",
            ARCHON_DATA_DIR=str(tmp_path / "data"),
            ARCHON_ENV_FILE="",
        )
        log = (tmp_path / "serve.log").open("wb")
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz")
            body = encode(labeled("archon:plan-opus impl-kimi", sender="maintainer"))
            answer = requests.post(
                f"http://127.0.0.1:{port}/webhook",
                data=body,
                headers=delivery_headers("issues", body),
                timeout=10,
            )
            assert answer.status_code == 202, answer.text
            gh.wait_for(lambda: any("Done" in c["body"] for c in gh.comments(REPO, 1)), timeout=60)
            assert len(gh.pulls(REPO)) == 1
            assert (tmp_path / "data" / "redis").is_dir()  # the embedded Redis keeps its data there
        finally:
            serve.send_signal(signal.SIGTERM)
            code = serve.wait(timeout=30)
            print((tmp_path / "serve.log").read_text())
        assert code == 0
        assert gh.violations == []


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(url)
