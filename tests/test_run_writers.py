"""A run record has several writers: its job, `/archon cancel`, and the failure paths. None of them may
lose what another wrote, whichever lands first (a real Redis; the job runs in-process)."""

from __future__ import annotations

import itertools
import threading

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from bot import failures
from bot.publish import GitHubPublisher
from bot.queue import RUNS_QUEUE
from bot.runs import NodeRun, NodeState, RunEnded, RunRecord, RunState, RunStore, ended_elsewhere
from tests.support import REPO
from tests.test_triage import command, work
from tests.test_workflow_run import comments_of

pytestmark = pytest.mark.usefixtures("remote")


def the_record(connection: redis.Redis) -> RunRecord:
    [record] = RunStore(connection).for_issue(REPO, 1)
    return record


@pytest.fixture
def queued(github, redis_conn) -> RunRecord:
    """A run asked for and queued, not started."""
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    return the_record(redis_conn)


@pytest.mark.parametrize(("stored", "writing"), list(itertools.product(RunState, RunState)))
def test_a_job_may_not_undo_an_end_it_did_not_write(stored: RunState, writing: RunState) -> None:
    undoes = (stored is RunState.CANCELLED and writing is not RunState.CANCELLED) or (
        stored in (RunState.DONE, RunState.FAILED, RunState.WAITING)
        and writing in (RunState.QUEUED, RunState.RUNNING)
    )
    assert ended_elsewhere(stored, writing) is undoes


def test_update_runs_its_change_again_on_what_a_concurrent_writer_saved(redis_conn, queued) -> None:
    other = RunStore(redis.Redis(connection_pool=redis_conn.connection_pool))
    calls = []

    def change(record: RunRecord) -> bool:
        calls.append(record.summary)
        if len(calls) == 1:  # another writer lands between this read and this write
            stale = other.load(record.run_id)
            stale.summary = "written meanwhile"
            other.save(stale)
        record.feedback = "mine"
        return True

    written = RunStore(redis_conn).update(queued.run_id, change)
    assert calls == [None, "written meanwhile"]
    stored = the_record(redis_conn)
    assert (
        (stored.summary, stored.feedback)
        == ("written meanwhile", "mine")
        == (written.summary, written.feedback)
    )


def test_update_writes_nothing_when_there_is_no_change_or_no_record(redis_conn, queued) -> None:
    store = RunStore(redis_conn)
    before = redis_conn.get(f"archon:run:{queued.run_id}")
    assert store.update(queued.run_id, lambda record: False) is None
    assert redis_conn.get(f"archon:run:{queued.run_id}") == before
    assert store.update("r-none", lambda record: True) is None


def test_a_jobs_stale_copy_cannot_revive_a_cancelled_run(redis_conn, queued) -> None:
    job_store = RunStore(redis_conn, for_job=True)
    copy = the_record(redis_conn)
    copy.state = RunState.RUNNING
    job_store.save(copy)  # its own writes go through while nobody else ended the run
    assert RunStore(redis_conn).update(queued.run_id, lambda record: record.cancel(by="maintainer"))
    copy.summary = "still going"
    with pytest.raises(RunEnded):
        job_store.save(copy)
    copy.state = RunState.DONE
    with pytest.raises(RunEnded):  # nor end it its own way
        job_store.save(copy)
    stored = the_record(redis_conn)
    assert (stored.state, stored.summary) == (RunState.CANCELLED, "Cancelled by @maintainer.")


def test_a_jobs_writes_after_its_own_end_still_land(redis_conn, queued) -> None:
    job_store, copy = RunStore(redis_conn, for_job=True), the_record(redis_conn)
    copy.state = RunState.DONE
    job_store.save(copy)
    copy.pr_number = 7  # e.g. the check run and comment ids written after the final state
    job_store.save(copy)
    assert the_record(redis_conn).pr_number == 7


def test_a_stop_after_a_cancel_keeps_the_cancels_words(github, redis_conn, queued) -> None:
    running = the_record(redis_conn)
    running.state = RunState.RUNNING
    running.nodes["plan"] = NodeRun(id="plan", kind="agent", state=NodeState.RUNNING)
    RunStore(redis_conn).save(running)
    command(github, redis_conn, "/archon cancel")
    cancelled = the_record(redis_conn)
    assert cancelled.state is RunState.CANCELLED and cancelled.failed_node == "plan"
    assert cancelled.nodes["plan"].state is NodeState.FAILED
    # the worker's stop callback and RQ's cleanup arrive later, and find nothing to change
    assert failures.fail_run(redis_conn, queued.run_id, None, state=RunState.CANCELLED) is None
    assert failures.fail_run(redis_conn, queued.run_id, "the worker died") is None
    assert the_record(redis_conn).model_dump() == cancelled.model_dump()
    [status] = comments_of(github, "status")
    assert "Cancelled by @maintainer." in status["body"]


def test_a_cancel_that_finds_the_run_ended_meanwhile_says_so(github, redis_conn, queued) -> None:
    assert failures.fail_run(
        redis_conn, queued.run_id, None, state=RunState.CANCELLED, summary=failures.STOPPED
    )
    command(github, redis_conn, "/archon cancel")
    assert the_record(redis_conn).summary == failures.STOPPED
    assert "there is no queued, running or waiting Archon run" in comments_of(github, "reply")[-1]["body"]


def test_a_job_still_going_after_a_cancel_stops_at_its_next_write(
    github, redis_conn, queued, monkeypatch
) -> None:
    """The worker's stop takes a moment to arrive; meanwhile the job must not write over the cancel."""
    real_post_plan = GitHubPublisher.post_plan

    def cancel_while_the_plan_is_posted(self: GitHubPublisher, record: RunRecord, text: str) -> str:
        other = redis.Redis(connection_pool=redis_conn.connection_pool)
        # from another thread, as from another machine
        thread = threading.Thread(
            target=RunStore(other).update, args=(record.run_id, lambda r: r.cancel(by="maintainer"))
        )
        thread.start()
        thread.join()
        return real_post_plan(self, record, text)

    monkeypatch.setattr(GitHubPublisher, "post_plan", cancel_while_the_plan_is_posted)
    work(redis_conn, RUNS_QUEUE)
    record = the_record(redis_conn)
    assert record.state is RunState.CANCELLED and record.summary == "Cancelled by @maintainer."
    assert record.nodes["implement"].state is NodeState.PENDING  # nothing ran after the cancel
    assert github.pulls(REPO) == []
    job = Job.fetch(record.job_id, connection=redis_conn)
    assert job.get_status() is JobStatus.FAILED and "RunEnded" in (job.latest_result().exc_string or "")
    assert Queue(RUNS_QUEUE, connection=redis_conn).count == 0  # not retried
