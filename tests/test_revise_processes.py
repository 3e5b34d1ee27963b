"""Iterating on the bot's pull request end to end: gunicorn serving the webhook, a separate `archon-bot
worker` process, a real Redis, the fake GitHub validating every request against GitHub's OpenAPI
description, a real bare remote, and scripted models. GitHub's example payloads, signed, go in over HTTP.

One labelled issue runs to a pull request once for the module; each test then asks for its own revision
of it and asserts on that revision only (found by its delivery id), so the tests stay independent while
paying for one full run.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from bot.fakes.stack import LocalStack
from bot.publish import RUN_CHECK
from bot.runs import Revision, RunRecord, RunState, RunStore
from bot.sample_repo import FILES
from tests.support import INSTALLATION_ID, OPENAPI, REPO, commented, example, labeled
from tests.test_workflow_run import push_human_fix

#: Generous: a revision is a scripted implement, validation, a commit, a push and an evaluation, on a
#: loaded 2-core machine.
DEADLINE = 180.0
CONFIG = ".github/archon.yml"


def revise_script(tag: str) -> str:
    """The implementer's turns for one revision: a docstring edit unique to `tag`, so every revision
    makes a new commit (the edited text stays in the file for the next one to find)."""
    old = '"""Turn titles into URL slugs.'
    turns = [
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "textkit/slug.py"}}]},
        {
            "tool_calls": [
                {
                    "name": "edit_file",
                    "arguments": {
                        "path": "textkit/slug.py",
                        "old_string": old,
                        "new_string": f"{old} {tag}.",
                    },
                }
            ]
        },
        {"text": f"Noted {tag} in the module docstring."},
    ]
    return "\n".join(json.dumps(t) for t in turns) + "\n"


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("revise-scripts")


@pytest.fixture(scope="module")
def stack(scripts: Path) -> Iterator[LocalStack]:
    with LocalStack(openapi=OPENAPI, extra_env={"ARCHON_SCRIPTS_DIR": str(scripts)}) as stack:
        yield stack


@pytest.fixture(scope="module")
def done(stack: LocalStack) -> RunRecord:
    """A labelled issue run to its draft pull request, once for the module."""
    stack.add_sample_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "admin"})
    answer = stack.deliver("issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    assert answer.status_code == 202, answer.text
    gh = stack.github
    try:
        gh.wait_for(lambda: any("✅ **Done**" in c["body"] for c in gh.comments(REPO, 1)), timeout=DEADLINE)
        # the run check run completes after the status comment's last edit
        gh.wait_for(lambda: run_checks_completed(gh), timeout=DEADLINE)
    finally:
        print(stack.logs())
    [record] = RunStore(connect(stack)).for_issue(REPO, 1)
    assert record.state is RunState.DONE and record.pr_number is not None, record.error
    return record


@pytest.fixture
def github(stack: LocalStack, done: RunRecord) -> Iterator:
    yield stack.github
    print(stack.logs())  # shown only when the test fails
    assert stack.github.violations == []


def run_checks_completed(gh) -> bool:
    return any(c["status"] == "completed" for c in gh.check_runs(REPO) if c["name"] == RUN_CHECK)


def connect(stack: LocalStack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis.url)


def eventually(probe: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll `probe` until it is truthy; transient errors (Redis or git busy) count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := probe():
                return result
        except (redis.RedisError, OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not within {timeout}s: {probe}")


def revision_of(stack: LocalStack, record: RunRecord, delivery: str) -> Revision | None:
    loaded = RunStore(connect(stack)).load(record.run_id)
    return next((r for r in loaded.revisions if r.delivery_id == delivery), None) if loaded else None


def finished_revision(stack: LocalStack, record: RunRecord, delivery: str) -> Revision:
    """The revision a delivery asked for, once its job has replied (the reply is its last write)."""
    revision = eventually(
        lambda: (
            (r := revision_of(stack, record, delivery)) and r.state in (RunState.DONE, RunState.FAILED) and r
        )
    )
    assert revision.state is RunState.DONE, (revision.summary, stack.logs())
    key = f"archon-bot:reply:{record.run_id}-v{revision.number}"
    gh = stack.github
    number = record.pr_number
    gh.wait_for(
        lambda: any(
            key in c["body"] for c in (*gh.comments(REPO, number), *gh.review_comments(REPO, number))
        ),
        timeout=DEADLINE,
    )
    return revision


def triaged(stack: LocalStack, delivery: str) -> str:
    """Wait for a delivery's triage job to finish; its result (what triage decided)."""
    connection = connect(stack)
    job = eventually(lambda: Job.fetch(f"triage-{delivery}-0", connection=connection).is_finished and True)
    assert job
    return str(Job.fetch(f"triage-{delivery}-0", connection=connection).return_value())


def remote(stack: LocalStack) -> Path:
    return stack.remotes / f"{REPO}.git"


def is_ancestor(stack: LocalStack, old: str, new: str) -> bool:
    done = subprocess.run(["git", "--git-dir", str(remote(stack)), "merge-base", "--is-ancestor", old, new])
    return done.returncode == 0


def pull(github, number: int) -> dict:
    return next(p for p in github.pulls(REPO) if p["number"] == number)


def deliver(stack: LocalStack, event: str, payload: dict, delivery: str | None = None) -> str:
    delivery = delivery or str(uuid.uuid4())
    answer = stack.deliver(event, payload, delivery=delivery)
    assert answer.status_code == 202, answer.text
    return delivery


def pr_comment(stack: LocalStack, number: int, body: str) -> dict:
    """A maintainer's comment on the pull request, in the fake and as its `issue_comment` payload."""
    payload = commented(body, pull_request=True)
    payload["issue"]["number"] = number
    stack.github.add_comment(REPO, number, body, author="maintainer", comment_id=payload["comment"]["id"])
    return payload


def review_payload(number: int, review: dict) -> dict:
    payload = example("pull_request_review.submitted")
    payload["pull_request"]["number"] = number
    payload["review"] = {**payload["review"], **review}
    payload["review"]["state"] = review["state"].lower()
    payload["sender"] = {**payload["sender"], "login": "maintainer"}
    return payload


# --- the first run -------------------------------------------------------------------------------


def test_the_run_opens_a_pull_request_with_its_check_run(github, done: RunRecord) -> None:
    head = pull(github, done.pr_number)["head"]["sha"]
    [check] = [c for c in github.check_runs(REPO, head) if c["name"] == RUN_CHECK]
    assert (check["status"], check["conclusion"], check["external_id"]) == (
        "completed",
        "success",
        done.run_id,
    )
    assert github.check_run_statuses(check["id"]) == ["in_progress", "completed"]  # from the PR node on


# --- revisions -------------------------------------------------------------------------------------


def test_revise_from_a_pr_comment_through_the_processes(stack, github, done, scripts) -> None:
    (scripts / "demo-kimi-revise.jsonl").write_text(revise_script("comment-tag"))
    number = done.pr_number
    old_head = pull(github, number)["head"]["sha"]
    payload = pr_comment(stack, number, "/archon revise Say what a slug keeps.")
    delivery = deliver(stack, "issue_comment", payload)
    revision = finished_revision(stack, done, delivery)
    assert revision.via == "comment" and revision.commit
    new_head = pull(github, number)["head"]["sha"]
    assert new_head == revision.commit != old_head and is_ancestor(stack, old_head, new_head)  # no force-push
    assert [p["number"] for p in github.pulls(REPO)] == [number]  # never a second pull request
    key = f"{done.run_id}-v{revision.number}"
    [reply] = [c["body"] for c in github.comments(REPO, number) if f"archon-bot:reply:{key}" in c["body"]]
    assert reply.startswith("@maintainer revision") and "Noted comment-tag" in reply
    # a fresh evaluation review; every earlier evaluation of the run is marked superseded
    bot_reviews = [r for r in github.reviews(REPO, number) if "archon-bot:review:" in (r["body"] or "")]
    [fresh] = [r for r in bot_reviews if f"archon-bot:review:{key} -->" in r["body"]]
    assert "Superseded" not in fresh["body"]
    assert all(r["body"].startswith("> ⚠️ **Superseded**") for r in bot_reviews if r is not fresh)
    body = pull(github, number)["body"]  # the cost table has this revision's row
    assert f"| {revision.number} (revise) | @maintainer | Say what a slug keeps. | $" in body
    # the revision's `Archon run` check run: queued by triage, in progress in the job, then completed
    [check] = [
        c for c in github.check_runs(REPO, old_head) if (c["name"], c["external_id"]) == (RUN_CHECK, key)
    ]
    assert check["conclusion"] == "success"
    assert github.check_run_statuses(check["id"]) == ["queued", "in_progress", "completed"]
    [on_new] = [
        c for c in github.check_runs(REPO, new_head) if (c["name"], c["external_id"]) == (RUN_CHECK, key)
    ]
    assert on_new["conclusion"] == "success"  # the pull request's head shows the outcome too
    # GitHub's "Redeliver": the same delivery id again is acknowledged and revises nothing more
    again = stack.deliver("issue_comment", payload, delivery=delivery)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    record = RunStore(connect(stack)).load(done.run_id)
    assert [r.number for r in record.revisions if r.delivery_id == delivery] == [revision.number]


def test_revise_from_a_review_body_through_the_processes(stack, github, done, scripts) -> None:
    (scripts / "demo-kimi-revise.jsonl").write_text(revise_script("review-tag"))
    number = done.pr_number
    review = github.add_review(REPO, number, "/archon revise Mention the rule.", author="maintainer")
    delivery = deliver(stack, "pull_request_review", review_payload(number, review))
    revision = finished_revision(stack, done, delivery)
    assert (revision.via, revision.feedback) == ("review", "Mention the rule.") and revision.commit
    assert pull(github, number)["head"]["sha"] == revision.commit


def test_revise_from_a_review_thread_through_the_processes(stack, github, done, scripts) -> None:
    (scripts / "demo-kimi-revise.jsonl").write_text(revise_script("thread-tag"))
    number = done.pr_number
    first = github.add_review_comment(REPO, number, "Why only letters?", author="maintainer",
                                      path="textkit/slug.py", line=8)  # fmt: skip
    asking = github.add_review_comment(REPO, number, "/archon revise Say so in the docstring.",
                                       author="maintainer", in_reply_to=first["id"])  # fmt: skip
    payload = example("pull_request_review_comment.created")
    payload["pull_request"]["number"] = number
    payload["comment"] = {**payload["comment"], **asking}
    payload["sender"] = {**payload["sender"], "login": "maintainer"}
    revision = finished_revision(stack, done, deliver(stack, "pull_request_review_comment", payload))
    assert revision.via == "thread" and revision.thread and revision.thread.path == "textkit/slug.py"
    assert "@maintainer: Why only letters?" in revision.thread.earlier
    key = f"archon-bot:reply:{done.run_id}-v{revision.number}"
    [reply] = [c for c in github.review_comments(REPO, number) if key in c["body"]]
    assert reply["in_reply_to_id"] == first["id"]  # the answer is in the thread


def test_changes_requested_revises_only_where_opted_in(stack, github, done, scripts) -> None:
    (scripts / "demo-kimi-revise.jsonl").write_text(revise_script("changes-tag"))
    number = done.pr_number
    inline = [{"path": "textkit/slug.py", "line": 8, "body": "Keep digits in slugs too."}]
    review = github.add_review(
        REPO, number, "", author="maintainer", event="REQUEST_CHANGES", comments=inline
    )
    quiet = deliver(stack, "pull_request_review", review_payload(number, review))
    assert "has not opted in" in triaged(stack, quiet)
    assert revision_of(stack, done, quiet) is None
    files = github._repo(REPO).files
    files[CONFIG] = (FILES[CONFIG] + "\niterate: on_changes_requested\n").encode()
    try:
        review = github.add_review(REPO, number, "", author="maintainer", event="REQUEST_CHANGES",
                                   comments=inline)  # fmt: skip
        revision = finished_revision(
            stack, done, deliver(stack, "pull_request_review", review_payload(number, review))
        )
    finally:
        files[CONFIG] = FILES[CONFIG].encode()
    # an empty review body: its inline comments, with where they sit, are the feedback
    assert (
        "Keep digits in slugs too." in revision.feedback and "`textkit/slug.py` line 8" in revision.feedback
    )
    assert "@@ " in revision.feedback and revision.commit


def test_revise_on_a_pull_request_the_bot_did_not_open_is_refused(stack, github, done, tmp_path) -> None:
    if not any(p["head"]["ref"] == "human-fix" for p in github.pulls(REPO)):
        push_human_fix(remote(stack), tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify", author="someone")
    delivery = deliver(stack, "issue_comment", pr_comment(stack, number, "/archon revise make it better"))
    reply = github.wait_for(
        lambda: next(
            (c["body"] for c in github.comments(REPO, number) if "archon-bot:reply:" in c["body"]), None
        ),
        timeout=DEADLINE,
    )
    assert "I can only revise pull requests Archon Bot opened" in reply
    assert revision_of(stack, done, delivery) is None
    assert not [c for c in github.check_runs(REPO) if c["external_id"].startswith(f"{done.run_id}-v") and
                c["head_sha"] == pull(github, number)["head"]["sha"]]  # fmt: skip
