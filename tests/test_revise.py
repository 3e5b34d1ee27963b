"""Iterating on the bot's pull request: `/archon revise` (a PR comment, a review, a review thread), the
opt-in on "changes requested", the refusal on someone else's pull request, and `/archon help` from the
command table. Triage and run jobs on an in-process RQ worker, the fake GitHub, a bare remote, scripted
models."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from bot.commands import COMMANDS, help_text
from bot.runs import RunState, RunStore
from tests.support import REPO, example
from tests.test_triage import bot_comments, command, deliver, run_labelled_issue, work

RUNS = "archon-runs"
REVISE_SCRIPT = [
    {"tool_calls": [{"name": "read_file", "arguments": {"path": "textkit/slug.py"}}]},
    {
        "tool_calls": [
            {
                "name": "edit_file",
                "arguments": {
                    "path": "textkit/slug.py",
                    "old_string": '"""Turn titles into URL slugs."""\n',
                    "new_string": '"""Turn titles into URL slugs (letters and digits only)."""\n',
                },
            }
        ]
    },
    {"text": "Documented in the module docstring that slugs keep letters and digits only."},
]


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "revise-scripts"
    folder.mkdir()
    (folder / "demo-kimi-revise.jsonl").write_text("\n".join(json.dumps(t) for t in REVISE_SCRIPT) + "\n")
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(folder))
    return folder


def log(remote: Path, branch: str) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%H", branch], capture_output=True, text=True
    )
    return out.stdout.split()


def done_run(redis_conn):
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    return record


def transcript(worker_env, run_id: str) -> str:
    folder = Path(worker_env["ARCHON_DATA_DIR"]) / "runs" / run_id / "transcripts"
    return "\n".join(p.read_text() for p in sorted(folder.glob("revise-*.jsonl")))


def test_revise_from_a_pr_comment_adds_a_commit_replies_and_reviews_again(
    github, redis_conn, remote, scripts, worker_env
) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    before = log(remote, record.branch)
    command(github, redis_conn, "/archon revise Say in the docstring what a slug keeps.", pull_request=True,
            issue=pull["number"])  # fmt: skip
    work(redis_conn, RUNS)
    record = RunStore(redis_conn).load(record.run_id)
    [revision] = record.revisions
    assert revision.state is RunState.DONE, revision.summary
    after = log(remote, record.branch)
    assert after[1:] == before and revision.commit == after[0]  # one commit on top: no force-push
    assert len(github.pulls(REPO)) == 1
    first, fresh = github.reviews(REPO, pull["number"])  # a fresh evaluation, the first one superseded
    fresh_url = f"{pull['html_url']}#pullrequestreview-{fresh['id']}"
    assert first["body"].startswith(f"> ⚠️ **Superseded** by [the evaluation of revision 1]({fresh_url})")
    assert "Superseded" not in fresh["body"]
    # the revised head has its own `Archon evaluation` check run (the first head keeps the first one)
    head = github.pulls(REPO)[0]["head"]["sha"]
    assert [c["name"] for c in github.check_runs(REPO, head) if c["name"] == "Archon evaluation"] == [
        "Archon evaluation"
    ]
    # the revision's `Archon run` check run: queued by triage, in progress in its job, then completed
    key = f"{record.run_id}-v1"
    [check] = [
        c for c in github.check_runs(REPO, before[0]) if (c["name"], c["external_id"]) == ("Archon run", key)
    ]
    assert github.check_run_statuses(check["id"]) == ["queued", "in_progress", "completed"]
    [body] = [p["body"] for p in github.pulls(REPO)]  # the cost table has the revision's row
    assert "| 1 (revise) | @maintainer | Say in the docstring what a slug keeps. | $" in body
    assert f"| `{revision.commit[:7]}` |" in body and f"archon-bot:pull:{record.run_id}" in body
    replies = [c["body"] for c in bot_comments(github, pull["number"]) if "revision 1" in c["body"]]
    assert any("Documented in the module docstring" in r for r in replies)
    assert "Say in the docstring what a slug keeps." in transcript(worker_env, record.run_id)
    # `/archon status` on the pull request lists the revision
    command(github, redis_conn, "/archon status", pull_request=True, issue=pull["number"])
    assert any("| 1 | revise | @maintainer |" in c["body"] for c in bot_comments(github, pull["number"]))


REPLAN_TEXT = "## Root cause\nRe-planned: the docstring must say what a slug keeps.\n\n## Steps\n1. Edit it."


def test_replan_posts_a_new_plan_and_implements_it_on_the_same_branch(
    github, redis_conn, remote, scripts, worker_env
) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    before = log(remote, record.branch)
    # from now on the planner answers with a new plan (the original run used the bundled one)
    (scripts / "demo-opus-plan.jsonl").write_text(json.dumps({"text": REPLAN_TEXT}) + "\n")
    command(github, redis_conn, "/archon replan Plan for documenting the rule too.", pull_request=True,
            issue=pull["number"])  # fmt: skip
    work(redis_conn, RUNS)
    record = RunStore(redis_conn).load(record.run_id)
    [revision] = record.revisions
    assert revision.kind == "replan" and revision.state is RunState.DONE, revision.summary
    after = log(remote, record.branch)
    assert after[1:] == before and revision.commit == after[0]  # one new commit on the same branch
    assert [p["number"] for p in github.pulls(REPO)] == [pull["number"]]  # no new pull request
    old, new = [c for c in bot_comments(github, record.config.issue) if "archon-bot:plan:" in c["body"]]
    assert old["body"].startswith(f"> ⚠️ **Superseded** by [a revised plan]({new['html_url']})")
    assert "Re-planned: the docstring" in new["body"] and "revision 1" in new["body"]
    assert "Superseded" not in new["body"] and record.plan_urls[-1] == new["html_url"]
    plan_prompt = "\n".join(
        p.read_text() for p in (Path(worker_env["ARCHON_DATA_DIR"]) / "runs" / record.run_id).rglob("plan*")
        if p.is_file()
    )  # fmt: skip
    assert "Plan for documenting the rule too." in plan_prompt  # the feedback reached the planner
    assert "Re-planned: the docstring" in transcript(
        worker_env, record.run_id
    )  # and the plan the implementer


def test_a_crashed_revision_tells_the_maintainer_how_to_retry(github, redis_conn, remote, scripts) -> None:
    from bot.failures import REVISION_FAILED

    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    command(github, redis_conn, "/archon revise Document it.", pull_request=True, issue=pull["number"])
    away = remote.with_name(remote.name + ".away")
    remote.rename(away)  # the job's fetch of the branch now fails: not a run's failure, a crash
    try:
        work(redis_conn, RUNS)
    finally:
        away.rename(remote)
    [revision] = RunStore(redis_conn).load(record.run_id).revisions
    assert revision.state is RunState.FAILED and revision.finished_at is not None
    prefix = REVISION_FAILED.split("{reason}")[0].format(number=1, kind="revise")
    [told] = [c["body"] for c in bot_comments(github, pull["number"]) if prefix in c["body"]]
    assert told.startswith("@maintainer ") and "comment `/archon revise …` again to retry" in told
    assert revision.summary and revision.summary.split()[0] in told, told  # the reason, as recorded


def test_a_crashed_revision_completes_its_check_run(github, redis_conn, remote, scripts, monkeypatch) -> None:
    import bot.revise

    def crash(*args, **kwargs):
        raise RuntimeError("the work-horse ran out of disk")

    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    command(github, redis_conn, "/archon revise Document it.", pull_request=True, issue=pull["number"])
    monkeypatch.setattr(bot.revise, "run_revision", crash)
    work(redis_conn, RUNS)
    [check] = [c for c in github.check_runs(REPO) if c["external_id"] == f"{record.run_id}-v1"]
    assert (check["status"], check["conclusion"]) == ("completed", "failure")  # not "in progress" for ever
    assert github.check_run_statuses(check["id"])[0] == "queued"


def test_the_same_delivery_twice_revises_once(github, redis_conn, remote, scripts) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    from tests.support import commented

    payload = commented("/archon revise once only", pull_request=True)
    payload["issue"]["number"] = pull["number"]
    github.add_comment(REPO, pull["number"], "/archon revise once only", author="maintainer",
                       comment_id=payload["comment"]["id"])  # fmt: skip
    delivery = str(uuid.uuid4())
    deliver(redis_conn, "issue_comment", payload, delivery)
    from bot.events import route
    from bot.queue import JobQueue
    from tests.support import APP_ID

    assert (
        JobQueue(redis_conn).accept_delivery(delivery, route("issue_comment", payload, delivery, APP_ID))
        is None
    )
    work(redis_conn)
    work(redis_conn, RUNS)
    assert len(RunStore(redis_conn).load(record.run_id).revisions) == 1


def test_revise_on_a_pull_request_the_bot_did_not_open_is_refused(
    github, redis_conn, remote, tmp_path
) -> None:
    from tests.test_workflow_run import push_human_fix

    push_human_fix(remote, tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify", author="someone")
    command(github, redis_conn, "/archon revise make it better", pull_request=True, issue=number)
    [reply] = [c["body"] for c in bot_comments(github, number)]
    assert "I can only revise pull requests Archon Bot opened" in reply
    from rq import Queue

    assert Queue(RUNS, connection=redis_conn).get_jobs() == []


def review_payload(number: int, body: str, state: str = "commented") -> dict:
    payload = example("pull_request_review.submitted")
    payload["pull_request"]["number"] = number
    payload["review"].update(body=body, state=state)
    payload["review"]["user"] = {**payload["review"]["user"], "login": "maintainer"}
    payload["sender"] = {**payload["sender"], "login": "maintainer"}
    return payload


def test_revise_from_a_review_body(github, redis_conn, remote, scripts) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    deliver(redis_conn, "pull_request_review", review_payload(pull["number"], "/archon revise Document it."))
    work(redis_conn)
    work(redis_conn, RUNS)
    [revision] = RunStore(redis_conn).load(record.run_id).revisions
    assert revision.via == "review" and revision.state is RunState.DONE


def test_changes_requested_without_the_opt_in_revises_nothing(github, redis_conn, remote, scripts) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    payload = review_payload(pull["number"], "Please document the rule.", state="changes_requested")
    deliver(redis_conn, "pull_request_review", payload)
    work(redis_conn)
    assert RunStore(redis_conn).load(record.run_id).revisions == []
    assert github.reactions(REPO, pull["number"]) == []


def test_changes_requested_revises_where_opted_in(github, redis_conn, remote, scripts) -> None:
    from bot.sample_repo import FILES, ISSUE_BODY, ISSUE_TITLE
    from tests.support import INSTALLATION_ID

    config = FILES[".github/archon.yml"] + "\niterate: on_changes_requested\n"
    github.add_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "maintain"},
                    files={".github/archon.yml": config}, git_dir=remote)  # fmt: skip
    github.add_issue(REPO, 1, title=ISSUE_TITLE, body=ISSUE_BODY, author="Codertocat")
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    review = github.add_review(
        REPO, pull["number"], "Please document the rule.", author="maintainer", event="REQUEST_CHANGES"
    )
    payload = review_payload(pull["number"], "Please document the rule.", state="changes_requested")
    payload["review"]["id"] = review["id"]  # the delivery names the review it is about
    deliver(redis_conn, "pull_request_review", payload)
    work(redis_conn)
    work(redis_conn, RUNS)
    [revision] = RunStore(redis_conn).load(record.run_id).revisions
    assert revision.feedback == "Please document the rule." and revision.state is RunState.DONE


def test_revise_from_a_review_thread_carries_the_thread(
    github, redis_conn, remote, scripts, worker_env
) -> None:
    record = done_run(redis_conn)
    [pull] = github.pulls(REPO)
    first = github.add_review_comment(REPO, pull["number"], "Why only letters?", author="maintainer",
                                      path="textkit/slug.py", line=8)  # fmt: skip
    asking = github.add_review_comment(REPO, pull["number"], "/archon revise Say so in the docstring.",
                                       author="maintainer", in_reply_to=first["id"])  # fmt: skip
    payload = example("pull_request_review_comment.created")
    payload["pull_request"]["number"] = pull["number"]
    payload["comment"] = {**payload["comment"], **asking}
    payload["sender"] = {**payload["sender"], "login": "maintainer"}
    deliver(redis_conn, "pull_request_review_comment", payload)
    work(redis_conn)
    work(redis_conn, RUNS)
    [revision] = RunStore(redis_conn).load(record.run_id).revisions
    assert revision.via == "thread" and revision.state is RunState.DONE, revision.summary
    assert (
        revision.thread.path == "textkit/slug.py"
        and "@maintainer: Why only letters?" in revision.thread.earlier
    )
    prompt = transcript(worker_env, record.run_id)  # the thread reaches the implementer
    assert "Why only letters?" in prompt and "textkit/slug.py" in prompt and "@@ " in prompt
    replies = [c for c in github.review_comments(REPO, pull["number"]) if "revision 1" in c["body"]]
    assert replies and replies[0]["in_reply_to_id"] == first["id"]


def test_help_comes_from_the_command_table() -> None:
    text = help_text()
    for info in COMMANDS.values():
        assert f"`{info.usage}` | {info.where} |" in text
