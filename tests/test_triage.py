"""Triage and run jobs against the fake GitHub and a real Redis, run by a real RQ worker in-process.

The jobs read their settings from the environment (`worker_env`), exactly as a worker process does.
Every request they make is checked against GitHub's OpenAPI description (the `github` fixture).
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from bot.events import Ignored, route
from bot.fakes.github import FakeGitHub
from bot.queue import RUNS_QUEUE, TRIAGE_QUEUE, JobQueue
from bot.runs import RunStore
from tests.support import APP_ID, REPO, SECRET, commented, installed, labeled

pytestmark = pytest.mark.usefixtures("worker_env")


def deliver(redis_conn: redis.Redis, event: str, payload: dict, delivery: str | None = None) -> list[str]:
    delivery = delivery or str(uuid.uuid4())
    tasks = route(event, payload, delivery, APP_ID)
    assert not isinstance(tasks, Ignored), tasks
    jobs = JobQueue(redis_conn).accept_delivery(delivery, tasks)
    assert jobs is not None
    return jobs


def work(redis_conn: redis.Redis, *queues: str) -> None:
    names = queues or (TRIAGE_QUEUE,)
    worker = SimpleWorker([Queue(name, connection=redis_conn) for name in names], connection=redis_conn)
    worker.work(burst=True)


def run_labelled_issue(
    redis_conn: redis.Redis,
    label: str = "archon:plan-opus impl-kimi",
    title: str | None = None,
    body: str | None = None,
    sender: str = "maintainer",
):
    """A labelled issue, delivered and worked through triage and the run queue; its one run record."""
    from bot.runs import RunStore
    from bot.sample_repo import ISSUE_BODY, ISSUE_TITLE

    payload = labeled(label, sender=sender)
    payload["issue"].update(
        title=ISSUE_TITLE if title is None else title, body=ISSUE_BODY if body is None else body
    )
    deliver(redis_conn, "issues", payload)
    work(redis_conn)
    work(redis_conn, "archon-runs")
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    return record


def command(
    github: FakeGitHub,
    redis_conn: redis.Redis,
    body: str,
    *,
    sender: str = "maintainer",
    pull_request: bool = False,
    issue: int = 1,
) -> int:
    """A person comments `body`; the delivery is triaged. Returns the comment id."""
    payload = commented(body, sender=sender, pull_request=pull_request)
    payload["issue"]["number"] = issue
    comment_id = github.add_comment(REPO, issue, body, author=sender, comment_id=payload["comment"]["id"])
    deliver(redis_conn, "issue_comment", payload)
    work(redis_conn)
    return comment_id


def bot_comments(github: FakeGitHub, issue: int = 1) -> list[dict]:
    return [c for c in github.comments(REPO, issue) if c["user"]["login"] == github.bot_login]


def only_reply(github: FakeGitHub) -> str:
    [reply] = [c["body"] for c in bot_comments(github) if "archon-bot:reply:" in c["body"]]
    return reply


def again(redis_conn: redis.Redis, job_id: str, *, last_attempt: bool = False) -> None:
    """Run a triage job once more, as RQ's retry does (optionally as its last attempt)."""
    queue = Queue(TRIAGE_QUEUE, connection=redis_conn)
    job = Job.fetch(job_id, connection=redis_conn)
    queue.scheduled_job_registry.remove(job)
    if last_attempt:
        job.retries_left = 0
        job.save()
    queue.enqueue_job(job)


def run_jobs(redis_conn: redis.Redis) -> list[Job]:
    return Queue(RUNS_QUEUE, connection=redis_conn).get_jobs()


# --- starting runs -----------------------------------------------------------------------------------


def test_label_reacts_posts_a_queued_status_and_enqueues_the_run(github, redis_conn) -> None:
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    work(redis_conn)
    assert github.reactions(REPO, 1) == ["eyes"]
    [status] = bot_comments(github)
    assert "Queued" in status["body"] and "plan-opus impl-kimi" in status["body"]
    assert "claude-opus-5" in status["body"] and "kimi-k2.6" in status["body"]
    assert status["performed_via_github_app"]["id"] == APP_ID
    [job] = run_jobs(redis_conn)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert job.id == record.job_id and job.args == (record.run_id,)
    assert f"<!-- archon-bot:status:{record.run_id} -->" in status["body"]
    assert SECRET not in json.dumps(job.args) and "PRIVATE KEY" not in json.dumps(job.args)


def test_slash_command_reacts_on_the_comment(github, redis_conn) -> None:
    comment_id = command(github, redis_conn, "/archon run plan=opus impl=kimi")
    assert github.reactions(REPO, 1, comment_id) == ["eyes"]
    assert github.reactions(REPO, 1) == []
    assert "Queued" in bot_comments(github)[0]["body"]
    assert len(run_jobs(redis_conn)) == 1


def test_the_same_request_while_queued_is_not_run_twice(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    command(github, redis_conn, "/archon run impl=kimi plan=opus")
    assert len(run_jobs(redis_conn)) == 1
    reply = only_reply(github)
    assert "already queued" in reply and "/archon cancel" in reply
    assert "[its status](" in reply


def test_a_different_pairing_runs_alongside(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    command(github, redis_conn, "/archon run plan=kimi impl=kimi")
    assert len(run_jobs(redis_conn)) == 2
    assert len(bot_comments(github)) == 2


def test_a_retried_triage_job_posts_nothing_twice(github, redis_conn) -> None:
    [job_id] = deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi"))
    work(redis_conn)
    again(redis_conn, job_id)
    work(redis_conn)
    assert len(bot_comments(github)) == 1
    assert len(run_jobs(redis_conn)) == 1


def test_repository_config_overrides_an_alias(github, redis_conn) -> None:
    github.add_repo(
        REPO,
        installation=777,
        collaborators={"maintainer": "maintain"},
        files={
            ".github/archon.yml": (
                "models:\n  kimi:\n    provider: openrouter\n    model: moonshotai/kimi-k2.6\n"
                "    prices: {input: 0.95, cache_write: 0.95, cache_read: 0.16, output: 4}\n"
            )
        },
    )
    github.add_issue(REPO, 1)
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    assert "moonshotai/kimi-k2.6" in bot_comments(github)[0]["body"]


# --- refusals and helpful replies --------------------------------------------------------------------


def test_read_only_user_is_refused_with_a_reply(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi", sender="reader")
    reply = only_reply(github)
    assert reply.startswith("@reader sorry") and "write, maintain, admin" in reply
    assert run_jobs(redis_conn) == []


def test_unknown_user_label_is_refused(github, redis_conn) -> None:
    github.set_collaborator(REPO, "passer-by", "triage")
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi", sender="passer-by"))
    work(redis_conn)
    assert "sorry" in only_reply(github)
    assert run_jobs(redis_conn) == []


def test_repository_policy_can_admit_triage_role(github, redis_conn, monkeypatch) -> None:
    # The deployment admits triage; the repository narrows to triage and write.
    monkeypatch.setenv("ARCHON_ALLOWED_PERMISSIONS", "triage,write,maintain,admin")
    github.add_repo(
        REPO,
        installation=777,
        collaborators={"helper": "triage"},
        files={".github/archon.yml": "triggers:\n  permissions: [triage, write]\n"},
    )
    github.add_issue(REPO, 1)
    command(github, redis_conn, "/archon run", sender="helper")
    assert len(run_jobs(redis_conn)) == 1


def test_read_only_user_may_ask_for_help(github, redis_conn) -> None:
    command(github, redis_conn, "/archon help", sender="reader")
    reply = only_reply(github)
    assert "/archon run" in reply and "/archon bench" in reply


def test_unknown_alias_lists_valid_choices_and_starts_nothing(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=gpt9")
    reply = only_reply(github)
    assert "gpt9" in reply and "opus" in reply and "kimi" in reply
    assert run_jobs(redis_conn) == []


def test_malformed_command_gets_usage_and_help(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus plan=kimi")
    reply = only_reply(github)
    assert "could not understand" in reply and "Usage: `/archon run" in reply
    assert run_jobs(redis_conn) == []


def test_evaluate_on_an_issue_is_refused(github, redis_conn) -> None:
    command(github, redis_conn, "/archon evaluate")
    assert "works on pull requests" in only_reply(github)


def test_run_on_a_pull_request_is_refused(github, redis_conn) -> None:
    github.add_issue(REPO, 2, pull_request=True)
    command(github, redis_conn, "/archon run", pull_request=True, issue=2)
    [reply] = [c["body"] for c in bot_comments(github, 2)]
    assert "works on issues" in reply
    assert run_jobs(redis_conn) == []


def test_every_command_is_available() -> None:
    from bot.commands import help_text

    assert "not available yet" not in help_text()


def test_invalid_repository_config_is_reported(github, redis_conn) -> None:
    github.add_repo(
        REPO,
        installation=777,
        collaborators={"maintainer": "maintain"},
        files={".github/archon.yml": "modles: {}\n"},
    )
    github.add_issue(REPO, 1)
    command(github, redis_conn, "/archon run")
    reply = only_reply(github)
    assert "configuration is invalid" in reply and "modles" in reply


# --- information commands ----------------------------------------------------------------------------


def test_models_lists_the_registry(github, redis_conn) -> None:
    command(github, redis_conn, "/archon models", sender="reader")
    reply = only_reply(github)
    assert "| `opus` | anthropic | `claude-opus-5-5`" in reply and "`kimi-k2.6`" in reply
    assert "plan=`opus`" in reply


def test_status_and_cancel(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    command(github, redis_conn, "/archon status", sender="reader")
    assert "| queued |" in only_reply(github)
    command(github, redis_conn, "/archon cancel")
    [status] = [c for c in bot_comments(github) if "archon-bot:status:" in c["body"]]
    assert "Cancelled" in status["body"] and "@maintainer" in status["body"]
    replies = [c["body"] for c in bot_comments(github) if "archon-bot:reply:" in c["body"]]
    assert any(r.startswith("@maintainer cancelled `r") for r in replies)
    assert all(j.get_status() == "canceled" for j in run_jobs(redis_conn)) or run_jobs(redis_conn) == []
    work(redis_conn, RUNS_QUEUE)
    assert "Cancelled" in github.comments(REPO, 1)[1]["body"]  # the cancelled run never starts


def test_cancel_with_nothing_running(github, redis_conn) -> None:
    command(github, redis_conn, "/archon cancel")
    assert "no queued, running or waiting" in only_reply(github)


# --- run jobs ----------------------------------------------------------------------------------------


def test_crashed_run_says_so_and_how_to_retry(github, redis_conn, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_GIT_URL", "file:///nonexistent/remotes")  # the clone will fail
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi"))
    work(redis_conn)
    work(redis_conn, RUNS_QUEUE)
    [status] = bot_comments(github)
    assert "Failed" in status["body"] and "does not appear to be a git repository" in status["body"]
    assert "/archon retry" in status["body"]


# --- labels ------------------------------------------------------------------------------------------


def test_installation_creates_labels_once_and_keeps_existing_ones(github, redis_conn) -> None:
    github.add_label(REPO, "archon:bench", "000000", "ours, hand made")
    deliver(redis_conn, "installation", installed())
    work(redis_conn)
    labels = github.labels(REPO)
    assert labels["archon:bench"]["description"] == "ours, hand made"
    assert {"archon:plan-opus impl-kimi", "archon:plan-kimi impl-opus"} <= set(labels)
    assert all(label["description"] for label in labels.values())
    deliver(redis_conn, "installation_repositories", installed("installation_repositories.added"))
    github.add_repo("Codertocat/Space", installation=777)
    work(redis_conn)
    assert len(github.labels("Codertocat/Space")) == len(labels)
    assert len(github.calls_to("POST", r"/repos/Codertocat/Hello-World/labels")) == len(labels) - 1


def test_labels_command_creates_missing_labels(github, capsys) -> None:
    from bot.cli import main

    assert main(["labels", REPO]) == 0
    assert "created 5 label(s)" in capsys.readouterr().out
    assert main(["labels", REPO]) == 0
    assert "created 0 label(s)" in capsys.readouterr().out
    assert len(github.labels(REPO)) == 5


def test_worker_refuses_to_start_without_app_credentials(monkeypatch, capsys) -> None:
    from bot.cli import main

    monkeypatch.delenv("GITHUB_APP_ID")
    assert main(["worker", "--burst"]) == 2
    assert "GITHUB_APP_ID must be set" in capsys.readouterr().err
