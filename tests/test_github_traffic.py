"""How much a run asks of GitHub: calls and writes per default run against the budget of issue 13, and the
status comment's coalescing (`ARCHON_STATUS_INTERVAL`), against the fake GitHub and a real Redis.

Counting requests is not timing them: the budget is asserted here; the wall time is measured by
`scripts/bench_github_traffic.py`.
"""

from __future__ import annotations

import re
import threading

import pytest

from bot.evaluation.review import CHECK_NAME
from bot.fakes.github import FakeGitHub
from bot.publish import RUN_CHECK, StatusEdits
from bot.runs import NodeRun, NodeState, RunState, RunStore
from tests.support import REPO
from tests.test_github_resilience import QUICK, forge, queued_record, status_comments
from tests.test_triage import bot_comments, run_labelled_issue

pytestmark = pytest.mark.usefixtures("worker_env")

#: Issue 13's budget for one run of the default workflow on the sample repository (triage + run job,
#: the two installation tokens included).
MAX_CALLS, MAX_WRITES = 20, 12
COMMENT = rf"/repos/{REPO}/issues/comments/\d+"
CHECK_RUNS = rf"/repos/{REPO}/check-runs"


def writes(github: FakeGitHub) -> list[str]:
    return [f"{c.method} {c.path}" for c in github.calls if c.method != "GET"]


def test_a_default_run_stays_within_the_budget_and_shows_everything(
    github: FakeGitHub, redis_conn, remote, monkeypatch
) -> None:
    # An interval longer than any run here, so a slow machine cannot add an edit between the ends.
    monkeypatch.setenv("ARCHON_STATUS_INTERVAL", "3600")
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    assert len(github.calls) <= MAX_CALLS, [f"{c.method} {c.path}" for c in github.calls]
    assert len(writes(github)) <= MAX_WRITES, writes(github)
    # nothing read twice, nothing read that the job knew already
    assert len(github.calls_to("GET", r".*/collaborators/[^/]+/permission")) == 1
    assert github.calls_to("GET", rf"/repos/{REPO}") == []  # the default branch comes from the mirror
    assert github.calls_to("GET", rf"/repos/{REPO}/pulls/\d+") == []  # the head came with the PR
    assert len(github.calls_to("GET", rf"/repos/{REPO}/commits/[^/]+/check-runs")) == 1
    # … and nothing the maintainer sees is missing: the final status carries every node
    [status] = status_comments(github)
    body = status["body"]
    assert "✅ **Done**" in body and record.pr_url and record.pr_url in body
    for node in record.nodes:
        assert f"`{node}`" in body or node in body
    assert len(github.calls_to("PATCH", COMMENT)) == 2  # running, then the final state
    [pull] = github.pulls(REPO)
    [run] = [c for c in github.check_runs(REPO) if c["name"] == RUN_CHECK]
    assert github.check_run_statuses(run["id"]) == ["in_progress", "completed"]
    assert run["conclusion"] == "success" and run["head_sha"] == pull["head"]["sha"]
    [evaluation] = [c for c in github.check_runs(REPO) if c["name"] == CHECK_NAME]
    assert evaluation["head_sha"] == pull["head"]["sha"]
    assert len(github.reviews(REPO, pull["number"])) == 1


def test_a_lost_check_run_answer_is_not_a_second_check_run(github: FakeGitHub, redis_conn, remote) -> None:
    """The check runs a job knows are cached; a create whose answer was lost forgets the cache, so
    its retry lists the commit again and edits what the lost create made."""
    github.fail_next("POST", CHECK_RUNS, 502, after=True, body="in_progress")
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    [run] = [c for c in github.check_runs(REPO) if c["name"] == RUN_CHECK]
    assert run["status"] == "completed" and run["conclusion"] == "success"
    assert len([c for c in github.check_runs(REPO) if c["name"] == CHECK_NAME]) == 1


# --- coalescing the status comment --------------------------------------------------------------------


def running(record, *nodes: str) -> None:
    """The record as the engine leaves it when `nodes` have started (the last still running)."""
    record.state = RunState.RUNNING
    for number, node in enumerate(nodes):
        last = number == len(nodes) - 1
        record.nodes[node] = NodeRun(
            id=node, kind="agent", state=NodeState.RUNNING if last else NodeState.DONE
        )


def test_with_a_long_interval_only_the_first_and_final_states_are_written(
    github: FakeGitHub, redis_conn
) -> None:
    record = queued_record(redis_conn)
    edits = StatusEdits(forge(), RunStore(redis_conn), interval_s=3600, final_policy=QUICK)
    nodes = ["plan", "post-plan", "implement", "validate", "push", "open-pr"]
    for count in range(1, len(nodes) + 1):
        running(record, *nodes[:count])
        edits.show(record)
    assert len(github.calls_to("PATCH", COMMENT)) == 1  # the first change; the rest coalesced
    assert RunStore(redis_conn).load(record.run_id).nodes.keys() == set(nodes)  # saved all the same
    record.state, record.summary = RunState.DONE, "All done."
    edits.final(record)
    edits.close()
    assert len(github.calls_to("PATCH", COMMENT)) == 2
    [status] = status_comments(github)
    assert "✅ **Done**" in status["body"] and "All done." in status["body"]
    assert all(node in status["body"] for node in nodes)


def test_with_interval_zero_every_change_is_written(github: FakeGitHub, redis_conn) -> None:
    record = queued_record(redis_conn)
    edits = StatusEdits(forge(), RunStore(redis_conn), interval_s=0)
    nodes = ["plan", "post-plan", "implement"]
    for count in range(1, len(nodes) + 1):
        running(record, *nodes[:count])
        edits.show(record)
    patches = github.calls_to("PATCH", COMMENT)
    assert len(patches) == len(nodes)
    assert ["implement" in (p.body or {}).get("body", "") for p in patches] == [False, False, True]


def test_a_coalesced_change_is_written_when_the_interval_has_passed(github: FakeGitHub, redis_conn) -> None:
    """A long node must not leave the comment showing the node before it: the change that came too soon
    is written by a timer once the interval is over, without another change to carry it. The clock is
    the test's, so "too soon" holds however slowly a loaded machine runs; the timer waits 0.2 s for real."""
    record, now = queued_record(redis_conn), [100.0]
    edits = StatusEdits(forge(), RunStore(redis_conn), interval_s=0.3, clock=lambda: now[0])
    running(record, "plan")
    edits.show(record)  # written: the first change
    now[0] = 100.1
    running(record, "plan", "implement")
    edits.show(record)  # 0.1 s after the edit: pending, for the timer
    patches = github.wait_for(lambda: (found := github.calls_to("PATCH", COMMENT))[1:] and found)
    assert ["implement" in p.body["body"] for p in patches] == [False, True]
    assert "implement" in status_comments(github)[0]["body"]
    edits.close()


def test_after_close_a_pending_change_is_never_written(github: FakeGitHub, redis_conn) -> None:
    """Another writer (the failure path) may own the final state after `close`: nothing stale lands —
    the pending edit's timer is cancelled, and a timer that fired regardless writes nothing."""
    record, now = queued_record(redis_conn), [100.0]
    edits = StatusEdits(forge(), RunStore(redis_conn), interval_s=30, clock=lambda: now[0])
    running(record, "plan")
    edits.show(record)
    running(record, "plan", "implement")
    edits.show(record)  # pending: its timer would fire in 30 s
    timer = edits._timer
    assert timer is not None
    edits.close()
    timer.join(timeout=20)
    assert not timer.is_alive()  # cancelled, not waiting out its 30 s
    timer.function()  # as if it had fired after all
    assert len(github.calls_to("PATCH", COMMENT)) == 1
    assert "implement" not in status_comments(github)[0]["body"]


def test_final_waits_for_an_edit_in_flight_and_lands_last(github: FakeGitHub, redis_conn) -> None:
    """A timer edit and the final state never cross: the final body is the one that stays."""
    record = queued_record(redis_conn)
    edits = StatusEdits(forge(), RunStore(redis_conn), interval_s=0.05, final_policy=QUICK)
    for count in range(1, 30):
        running(record, *[f"n{i}" for i in range(count)])
        edits.show(record)
    record.state = RunState.DONE
    edits.final(record)
    edits.close()
    threading.Event().wait(0.2)
    [status] = status_comments(github)
    assert "✅ **Done**" in status["body"]
    last = github.calls_to("PATCH", COMMENT)[-1]
    assert re.search(r"\*\*Done\*\*", last.body["body"])
    assert len(bot_comments(github)) == 1
