"""Runs in a separate `archon-bot worker` process that is killed or stopped mid-run.

The run worker is a real process (so RQ can stop it, and a SIGKILL really kills it); triage runs
in-process. A killed worker is noticed by RQ's registry cleanup once the job's heartbeat expires; the
test runs that cleanup with a timestamp past the expiry instead of waiting for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from bot.queue import RUNS_QUEUE
from bot.runs import NodeState, RunState, RunStore
from tests.support import REPO
from tests.test_triage import command, work
from tests.test_workflow_run import comments_of

pytestmark = pytest.mark.usefixtures("remote")


def start_run_worker(tmp_path: Path) -> subprocess.Popen:
    log = (tmp_path / "run-worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", RUNS_QUEUE],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (RQ's work-horse runs in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, family = [pid], []
    while todo:
        current = todo.pop()
        family.append(current)
        todo.extend(children.get(current, []))
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def wait_for_node(redis_conn: redis.Redis, node: str, state: NodeState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = RunStore(redis_conn).for_issue(REPO, 1)
        if records and node in records[0].nodes and records[0].nodes[node].state is state:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{node} never became {state}")


def test_killed_worker_fails_the_run_and_retry_resumes(github, redis_conn, slow_implement, tmp_path) -> None:
    worker = start_run_worker(tmp_path)
    try:
        command(github, redis_conn, "/archon run plan=opus impl=kimi")
        wait_for_node(redis_conn, "implement", NodeState.RUNNING)
    finally:
        kill_tree(worker.pid)  # the machine goes away: no callback, no goodbye
        worker.wait()
    # later, some worker's maintenance finds the job's heartbeat expired
    registry = StartedJobRegistry(queue=Queue(RUNS_QUEUE, connection=redis_conn))
    registry.cleanup(timestamp=time.time() + 3600)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.FAILED and record.failed_node == "implement"
    [status] = comments_of(github, "status")
    assert "the worker running this job stopped" in status["body"]
    assert "`/archon retry` to resume from `implement`" in status["body"]
    slow_implement.unlink()  # the bundled script again: the retry finishes
    command(github, redis_conn, "/archon retry")
    work(redis_conn, RUNS_QUEUE)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.DONE and record.nodes["plan"].attempts == 1
    assert len(github.pulls(REPO)) == 1


def test_cancel_stops_a_running_job(github, redis_conn, slow_implement, tmp_path) -> None:
    worker = start_run_worker(tmp_path)
    try:
        command(github, redis_conn, "/archon run plan=opus impl=kimi")
        wait_for_node(redis_conn, "implement", NodeState.RUNNING)
        [running] = RunStore(redis_conn).for_issue(REPO, 1)
        command(github, redis_conn, "/archon cancel")
        # the record is ended at once, before the job is stopped
        [record] = RunStore(redis_conn).for_issue(REPO, 1)
        assert record.state is RunState.CANCELLED and record.nodes["implement"].state is NodeState.FAILED
        # and the worker really stops the job: its 60-second command does not run to its end
        deadline = time.monotonic() + 20
        while Job.fetch(running.job_id, connection=redis_conn).get_status() is JobStatus.STARTED:
            assert time.monotonic() < deadline, (tmp_path / "run-worker.log").read_text()
            time.sleep(0.1)
        assert Job.fetch(running.job_id, connection=redis_conn).get_status() is JobStatus.STOPPED
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.CANCELLED and record.summary == "Cancelled by @maintainer."
    [status] = comments_of(github, "status")
    assert "Cancelled" in status["body"] and "Cancelled by @maintainer." in status["body"]
    assert github.pulls(REPO) == []
