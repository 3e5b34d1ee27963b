"""The one failure path (bot/failures.py) with real processes: a work-horse killed mid-run, a whole worker
gone, a run that dies on one machine and is resumed on another, Redis restarted mid-run, a benchmark
report that cannot be posted, and a triage job that fails.

Worker processes are real `archon-bot worker` processes (RQ forks a work-horse per job); triage runs
in-process. Reconciliation is driven directly with a moment in the future instead of waiting minutes.
"""

from __future__ import annotations

import contextlib
import json
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

from bot import failures
from bot.bench.orchestrate import BenchStore
from bot.queue import RUNS_QUEUE
from bot.redis_server import RedisServer
from bot.runs import NodeState, RunRecord, RunState, RunStore
from tests.support import REPO, commented
from tests.test_bench_run import BUNDLED, scripts  # noqa: F401 - the benchmark's scripted models (a fixture)
from tests.test_triage import again, bot_comments, command, deliver, work
from tests.test_workflow_processes import kill_tree
from tests.test_workflow_run import comments_of

pytestmark = pytest.mark.usefixtures("remote")

DEADLINE_S = 120  # readiness waits on a loaded 2-core machine


def start_worker(tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", RUNS_QUEUE],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(worker: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill_tree(worker.pid)
        worker.wait()


def the_run(connection: redis.Redis) -> RunRecord | None:
    records = RunStore(connection).for_issue(REPO, 1)
    return records[0] if records else None


def wait_until(check, what: str, log: Path | None = None, timeout: float = DEADLINE_S):
    """Poll `check` until it returns something true; Redis hiccups count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what}\n{log.read_text() if log and log.exists() else ''}")


def node_is(connection: redis.Redis, node: str, state: NodeState) -> bool:
    record = the_run(connection)
    return bool(record and node in record.nodes and record.nodes[node].state is state)


def wait_for_implement(connection: redis.Redis, tmp_path: Path, worker: str = "worker") -> None:
    running = lambda: node_is(connection, "implement", NodeState.RUNNING)  # noqa: E731
    wait_until(running, "implement never ran", tmp_path / f"{worker}.log")


def strand_a_run(github, connection: redis.Redis, tmp_path: Path) -> None:
    """A run mid-`implement` whose whole worker is then killed: nothing will report it."""
    worker = start_worker(tmp_path, "worker")
    try:
        command(github, connection, "/archon run plan=opus impl=kimi")
        wait_for_implement(connection, tmp_path)
    finally:
        kill_tree(worker.pid)
        worker.wait()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        found.append(current := todo.pop())
        todo.extend(children(current))
    return found


def horse_of(worker: subprocess.Popen) -> int:
    """The work-horse: the worker's child whose family runs the agent's `sleep` (the scheduler is another
    child of the worker)."""

    def runs_sleep(pid: int) -> bool:
        return any(_cmdline(member).startswith(b"sleep\x00") for member in descendants(pid))

    return wait_until(lambda: next((p for p in children(worker.pid) if runs_sleep(p)), None), "no horse")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def kill_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the work-horse only (and then the command it left behind), never the worker."""
    horse = horse_of(worker)
    left = descendants(horse)
    os.kill(horse, signal.SIGKILL)
    for pid in left:
        kill_tree(pid)


# --- a killed work-horse -------------------------------------------------------------------------


def test_a_killed_horse_fails_the_run_at_once_and_retry_resumes(
    github, redis_conn, slow_implement, tmp_path
) -> None:
    worker = start_worker(tmp_path, "worker")
    log = tmp_path / "worker.log"
    try:
        command(github, redis_conn, "/archon run plan=opus impl=kimi")
        wait_for_implement(redis_conn, tmp_path)
        kill_horse(worker)  # the kernel's OOM killer, or the agent's own `kill -9 $PPID`
        record = wait_until(
            lambda: (r := the_run(redis_conn)) and r.state is RunState.FAILED and r, "never failed", log
        )
        assert worker.poll() is None  # the worker itself lives on
    finally:
        stop(worker)
    assert record.failed_node == "implement" and record.nodes["implement"].state is NodeState.FAILED
    assert "its process was killed (signal 9, SIGKILL" in (record.error or "")
    [status] = comments_of(github, "status")
    assert "its process was killed" in status["body"]
    assert "`/archon retry` to resume from `implement`" in status["body"]
    assert Job.fetch(record.job_id, connection=redis_conn).get_status() == JobStatus.FAILED  # not retried
    slow_implement.unlink()  # the bundled script again: the retry finishes
    command(github, redis_conn, "/archon retry")
    work(redis_conn, RUNS_QUEUE)
    record = the_run(redis_conn)
    assert record.state is RunState.DONE, record.error
    assert record.nodes["plan"].attempts == 1 and record.nodes["implement"].attempts == 2
    assert len(comments_of(github, "status")) == 1 and len(github.pulls(REPO)) == 1


# --- a whole worker gone -----------------------------------------------------------------------


def test_reconciliation_fails_a_run_whose_worker_is_gone(
    github, redis_conn, slow_implement, tmp_path
) -> None:
    strand_a_run(github, redis_conn, tmp_path)  # the machine goes away: no callback, no goodbye
    assert the_run(redis_conn).state is RunState.RUNNING  # stuck, as far as anyone can tell
    assert failures.reconcile(redis_conn) == []  # its heartbeat has not expired yet: not judged dead
    later = time.time() + 3600  # a maintenance pass after the job's heartbeat expired
    [run_id] = failures.reconcile(redis_conn, at=later)
    record = the_run(redis_conn)
    assert record.run_id == run_id and record.state is RunState.FAILED and record.failed_node == "implement"
    assert record.error == failures.WORKER_LOST
    [status] = comments_of(github, "status")
    assert "the worker running this job stopped" in status["body"]
    assert "`/archon retry` to resume from `implement`" in status["body"]
    assert failures.reconcile(redis_conn, at=later + 60) == []  # idempotent: told once
    assert comments_of(github, "status") == [status]


def test_a_run_that_died_on_one_machine_is_resumed_on_another(
    github, redis_conn, slow_implement, tmp_path
) -> None:
    first = start_worker(tmp_path, "first", ARCHON_DATA_DIR=str(tmp_path / "machine-1"))
    try:
        command(github, redis_conn, "/archon run plan=opus impl=kimi")
        wait_for_implement(redis_conn, tmp_path, "first")
        kill_horse(first)
        wait_until(
            lambda: the_run(redis_conn).state is RunState.FAILED, "never failed", tmp_path / "first.log"
        )
    finally:
        kill_tree(first.pid)  # and then the whole machine goes away
        first.wait()
    slow_implement.unlink()
    command(github, redis_conn, "/archon retry")
    second = start_worker(tmp_path, "second", ARCHON_DATA_DIR=str(tmp_path / "machine-2"))
    try:
        record = wait_until(
            lambda: (r := the_run(redis_conn)) and r.state is RunState.DONE and r,
            "the second machine never finished the run",
            tmp_path / "second.log",
        )
    finally:
        stop(second)
    assert record.nodes["plan"].attempts == 1 and record.nodes["implement"].attempts == 2
    assert (tmp_path / "machine-2" / "runs" / record.run_id).is_dir()
    assert len(github.pulls(REPO)) == 1 and len(comments_of(github, "status")) == 1


def test_retry_resumes_a_run_stuck_running_whose_job_is_lost(
    github, redis_conn, slow_implement, tmp_path
) -> None:
    """The worker is gone and Redis lost its job: no callback will ever come. `/archon retry` does not
    wait for a maintenance pass: it fails the run (told on its status comment) and resumes it."""
    strand_a_run(github, redis_conn, tmp_path)
    Job.fetch(the_run(redis_conn).job_id, connection=redis_conn).delete()
    assert the_run(redis_conn).state is RunState.RUNNING
    slow_implement.unlink()
    command(github, redis_conn, "/archon retry")
    [reply] = [c["body"] for c in bot_comments(github) if "resuming run" in c["body"]]
    assert "from `implement`" in reply
    work(redis_conn, RUNS_QUEUE)
    record = the_run(redis_conn)
    assert record.state is RunState.DONE and record.nodes["plan"].attempts == 1
    assert len(github.pulls(REPO)) == 1


# --- Redis restarted mid-run --------------------------------------------------------------------


def test_redis_restarted_mid_run_ends_with_an_answer(github, slow_implement, tmp_path, monkeypatch) -> None:
    """A private redis-server with an append-only file, restarted on the same port while a node runs:
    the run ends on GitHub, done or failed with a retry hint, never stuck "running"."""
    bundled = (BUNDLED / "demo-kimi-implement.jsonl").read_text()
    pause = '{"tool_calls": [{"name": "run", "arguments": {"command": "sleep 6"}}]}\n'
    slow_implement.write_text(pause + bundled)  # a pause, then the bundled fix: the run can finish
    server = RedisServer(data_dir=tmp_path / "redis").start()
    monkeypatch.setenv("REDIS_URL", server.url)
    connection = redis.Redis.from_url(server.url)
    worker = start_worker(tmp_path, "worker", REDIS_URL=server.url)
    try:
        command(github, connection, "/archon run plan=opus impl=kimi")
        wait_for_implement(connection, tmp_path)
        server.stop()  # SIGTERM: redis-server writes its append-only file out before it exits
        time.sleep(2)
        server = RedisServer(data_dir=tmp_path / "redis", port=server.port).start()

        def answered() -> RunRecord | None:
            failures.reconcile(connection)  # what every worker's maintenance does each minute
            record = the_run(connection)
            return record if record and not record.state.active else None

        record = wait_until(answered, "the run stayed active", tmp_path / "worker.log", timeout=240)
    finally:
        stop(worker)
        server.stop()
    [status] = comments_of(github, "status")
    if record.state is RunState.FAILED:
        assert "`/archon retry`" in status["body"]
    else:
        assert record.state is RunState.DONE and "✅ **Done**" in status["body"]


# --- the benchmark's report, and triage ----------------------------------------------------------


@pytest.mark.usefixtures("scripts", "worker_env")
def test_a_failed_benchmark_report_is_told_on_the_status_comment(github, redis_conn) -> None:
    github.fail_next("POST", r"/repos/.+/issues/1/comments", status=422, body="-report -->")
    command(github, redis_conn, "/archon bench plan=kimi impl=kimi")
    work(redis_conn, RUNS_QUEUE)
    [bench] = BenchStore(redis_conn).for_issue(REPO, 1)
    assert bench.state == "failed" and bench.error.startswith("the report could not be made")
    [status] = [c for c in bot_comments(github) if "-status -->" in c["body"]]
    assert "the report could not be made" in status["body"] and "repeat the command" in status["body"]
    assert [c for c in bot_comments(github) if "-report -->" in c["body"]] == []


def test_a_failed_triage_replies_once(github, redis_conn) -> None:
    """Told after the last attempt only, and once: a late second report (a killed horse's handler, say)
    edits the same reply."""
    github.fail_next("POST", r"/repos/.+/issues/comments/\d+/reactions", status=422, times=5)
    payload = commented("/archon run plan=opus impl=kimi")
    github.add_comment(REPO, 1, "/archon run", author="maintainer", comment_id=payload["comment"]["id"])
    [job_id] = deliver(redis_conn, "issue_comment", payload)
    work(redis_conn)
    assert replies(github) == []  # RQ tries again: nobody is told yet
    again(redis_conn, job_id, last_attempt=True)
    work(redis_conn)
    [reply] = replies(github)
    assert "could not handle this request" in reply and "Nothing was started" in reply and "422" in reply
    failures.call_failure_callback(Job.fetch(job_id, connection=redis_conn), "it was killed")
    [reply] = replies(github)
    assert "it was killed" in reply
    assert Queue(RUNS_QUEUE, connection=redis_conn).get_jobs() == [] and the_run(redis_conn) is None


def replies(github) -> list[str]:
    return [c["body"] for c in bot_comments(github) if "archon-bot:reply:" in c["body"]]


def test_only_transient_errors_use_rqs_retries(redis_conn) -> None:
    from github import GithubException

    job = Job.create("bot.jobs.execute_run", args=("r1",), connection=redis_conn, meta={"run_id": "r1"})
    job.retries_left = 2
    for transient in (ConnectionResetError("reset by peer"), GithubException(502, {}, {})):
        assert failures.failure_of(job, type(transient), transient) is None  # RQ tries again, untold
    assert job.retries_left == 2
    failure = failures.failure_of(job, ValueError, ValueError("a bug"))
    assert failure is not None and job.retries_left == 0 and failure.reason == "ValueError: a bug"
    assert failure.run_id == "r1" and failure.job_id == job.id
    job.retries_left = 2  # triage: quick and idempotent, any error gets another go
    assert failures.failure_of(job, ValueError, ValueError("a bug"), any_error=True) is None


# --- RQ's retry of a run job ---------------------------------------------------------------------


def test_a_transient_error_outside_the_nodes_is_retried_by_rq_untold(github, redis_conn) -> None:
    """Inside a node an error fails the node (for `/archon retry`); outside them — here the run's read
    of its issue (a record without the issue's snapshot, as an older one), answered 502 more times than
    the transport retries — RQ runs the job again on its own, and nobody is told of an error that went
    away."""
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    record = the_run(redis_conn)
    record.issue = None
    RunStore(redis_conn).save(record)
    github.fail_next("GET", r"/repos/[^/]+/[^/]+/issues/\d+", status=502, times=4)
    work(redis_conn, RUNS_QUEUE)
    record = the_run(redis_conn)
    assert record.state is RunState.RUNNING and record.error is None  # nobody was told: RQ tries again
    assert all(node.attempts == 0 for node in record.nodes.values())  # no node had started
    [status] = comments_of(github, "status")
    assert "Failed" not in status["body"]
    queue = Queue(RUNS_QUEUE, connection=redis_conn)
    [job_id] = queue.scheduled_job_registry.get_job_ids()  # the retry, 15 s from now
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.retries_left == 1
    retries = json.dumps(["job_retries", {"function": "execute_run"}], separators=(",", ":"))
    assert redis_conn.hget("archon:metrics", retries) == b"1"  # shown as archon_job_retries_total
    queue.scheduled_job_registry.remove(job)  # what RQ's scheduler does when the time comes
    queue.enqueue_job(job)
    work(redis_conn, RUNS_QUEUE)
    record = the_run(redis_conn)
    assert record.state is RunState.DONE, record.error
    assert record.nodes["explore"].attempts == 1 and record.nodes["plan"].attempts == 1
    assert len(github.pulls(REPO)) == 1 and len(comments_of(github, "status")) == 1


def test_a_queued_run_whose_job_redis_lost_is_failed_after_a_grace_period(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    record = the_run(redis_conn)
    Job.fetch(record.job_id, connection=redis_conn).delete()  # lost (an old snapshot restored, say)
    now = time.time()
    assert failures.reconcile(redis_conn, at=now) == []  # `/archon retry` may be requeueing it right now
    assert the_run(redis_conn).state is RunState.QUEUED
    later = now + failures.QUEUED_GRACE_S + 1
    with redis_conn.lock(failures.RECONCILE_LOCK, timeout=30):  # another worker's pass is under way
        assert failures.reconcile(redis_conn, at=later) == []
    assert failures.reconcile(redis_conn, at=later) == [record.run_id]
    record = the_run(redis_conn)
    assert record.state is RunState.FAILED and "no longer in the queue" in record.error
    [status] = comments_of(github, "status")
    assert "❌ **Failed**" in status["body"] and "`/archon retry`" in status["body"]


def test_worker_maintenance_fails_a_running_run_whose_job_is_gone(
    github, redis_conn, slow_implement, tmp_path
) -> None:
    from bot.worker import make_worker

    strand_a_run(github, redis_conn, tmp_path)
    Job.fetch(the_run(redis_conn).job_id, connection=redis_conn).delete()
    make_worker(redis_conn, [RUNS_QUEUE]).run_maintenance_tasks()  # what another machine's worker does
    record = the_run(redis_conn)
    assert record.state is RunState.FAILED and record.failed_node == "implement"
    assert "no longer in the queue" in record.error


def test_dead_reason_tells_a_live_queued_job_from_one_in_no_queue(github, redis_conn) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi")
    record = the_run(redis_conn)
    assert failures.dead_reason(redis_conn, record.run_id, record.job_id) is None  # waiting for a worker
    assert failures.dead_reason(redis_conn, "another-run", record.job_id) is not None  # not its job
    queue = Queue(RUNS_QUEUE, connection=redis_conn)
    redis_conn.lrem(queue.key, 0, record.job_id)  # the queue's list lost it (an old snapshot restored)
    assert "in no queue" in failures.dead_reason(redis_conn, record.run_id, record.job_id)
