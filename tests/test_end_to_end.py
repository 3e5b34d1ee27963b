"""End to end: gunicorn serving the app factory and a separate `archon-bot worker` process, a real
Redis, and the fake GitHub (validating every request against GitHub's OpenAPI description).
GitHub's own example payloads, signed, go in over HTTP; what comes out is read from the fake GitHub.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


def wait_healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):  # a read timeout while gunicorn imports too
            if requests.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(url)


def replies(script: str, *, thinking: bool = False) -> list:
    """A bundled demo script as turns of the fake model servers (the same answers, over real HTTP)."""
    from importlib import resources

    from bot.fakes._http import Reply, ToolCall, Usage
    from bot.providers.scripted import load_script

    path = Path(str(resources.files("bot.providers.scripts") / f"{script}.jsonl"))
    turns = []
    for turn in load_script(path):
        calls = [ToolCall(c.name, c.arguments) for c in turn.tool_calls if isinstance(c.arguments, dict)]
        usage = Usage(
            input_tokens=turn.usage.input_tokens,
            output_tokens=turn.usage.output_tokens,
            cache_read_tokens=turn.usage.cache_read_tokens,
            cache_creation_tokens=turn.usage.cache_write_tokens,
        )
        turns.append(
            Reply(
                text=turn.text,
                tool_calls=calls,
                usage=usage,
                thinking="Thinking it through." if thinking else None,
            )
        )
    return turns


def test_real_sdks_against_fake_model_servers(tmp_path: Path) -> None:
    """The README's promise end to end: Claude plans (Anthropic SDK → fake Messages API), Kimi implements
    (OpenAI SDK → fake Moonshot), through the web and worker processes, to a draft pull request."""
    from bot.fakes.anthropic import FakeAnthropic
    from bot.fakes.openai_compat import FakeOpenAI

    with FakeAnthropic() as claude, FakeOpenAI(moonshot=True) as kimi:
        claude.script(
            *replies("demo-haiku-explore"),
            *replies("demo-opus-plan", thinking=True),
            *replies("demo-opus-evaluate"),
        )
        kimi.script(*replies("demo-kimi-implement"), *replies("demo-kimi-self-review"))
        env = {
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": claude.base_url,
            "MOONSHOT_API_KEY": "sk-moonshot-test",
            "MOONSHOT_BASE_URL": kimi.base_url,
        }
        with LocalStack(openapi=OPENAPI, scripted=False, extra_env=env) as stack:
            stack.add_sample_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "write"})
            answer = stack.deliver("issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
            assert answer.status_code == 202
            gh = stack.github
            try:
                status = gh.wait_for(
                    lambda: (
                        (c := status_comment(gh)) and ("Done" in c["body"] or "Failed" in c["body"]) and c
                    ),
                    timeout=90,
                )
            finally:
                print(stack.logs())
            assert "✅ **Done**" in status["body"], status["body"]
            assert gh.violations == [] and claude.violations == [] and kimi.violations == []
            [pull] = gh.pulls(REPO)
            assert pull["draft"] and "claude-opus-5-5" in pull["body"] and "kimi-k2.6" in pull["body"]
        # every model call went over HTTP with the real SDKs' wire formats
        models = [r.body["model"] for r in claude.requests]
        assert models == ["claude-haiku-5-5"] * 3 + ["claude-opus-5-5"] * 3
        judge = claude.requests[-1].body
        assert judge["tools"][0]["name"] == "submit_evaluation"
        assert not any(name in json.dumps(judge["messages"]) for name in ("opus", "kimi", "claude", "haiku"))
        assert {r.body["model"] for r in kimi.requests} == {"kimi-k2.6"}
        # the plan thinks (adaptively: the Claude 5 family refuses a budget); the judge need not
        assert claude.requests[4].body["thinking"] == {"type": "adaptive"}
        assert all("temperature" not in r.body for r in kimi.requests)


def test_benchmark_through_separate_worker_processes(tmp_path: Path) -> None:
    """archon:bench → web → Redis → two run workers in parallel → the report comment and files."""
    from tests.test_bench_run import TOTALS, judge_script

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    bundled = Path(str(__import__("importlib").resources.files("bot.providers.scripts")))
    for source, target in (
        ("demo-opus-plan", "demo-kimi-plan"),
        ("demo-kimi-implement", "demo-opus-implement"),
        ("demo-kimi-self-review", "demo-opus-self-review"),
    ):
        (scripts / f"{target}.jsonl").write_text((bundled / f"{source}.jsonl").read_text())
    for (plan, impl), total in TOTALS.items():
        (scripts / f"demo-opus-evaluate-{plan}-{impl}.jsonl").write_text(judge_script(total))
    env = {"ARCHON_SCRIPTS_DIR": str(scripts)}
    with LocalStack(openapi=OPENAPI, run_workers=2, extra_env=env) as stack:
        stack.add_sample_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "write"})
        assert stack.deliver("issues", labeled("archon:bench", sender="maintainer")).status_code == 202
        gh = stack.github
        try:
            report = gh.wait_for(
                lambda: next((c for c in gh.comments(REPO, 1) if "-report -->" in c["body"]), None),
                timeout=120,
            )
        finally:
            print(stack.logs())
        assert gh.violations == []
        assert "Plan with opus, implement with kimi (OK): 97% of OO's score" in report["body"]
        reports = list((stack.data_dir / "data" / "bench").glob("*/bench.json"))
        assert len(reports) == 1
