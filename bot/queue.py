"""The durable queue: RQ on Redis, with two queues so triage never waits behind a long run.

`accept_delivery` is the web handler's only write, and its only Redis round trip: one Lua script sets
the delivery id (SET NX, 4-day TTL) and, only if that set it, writes the triage jobs exactly as RQ's own
`Queue.enqueue_job` would. What RQ writes for a triage job is recorded once per process from RQ itself
(`Queue.enqueue_job(pipeline=…)` on a pipeline that is never sent) and becomes that script; a delivery
sends only what differs from job to job (id, serialized arguments, description, timestamps). The
template is checked against a second recording when it is built, so an RQ that writes differently
fails at the first delivery, loudly, instead of writing jobs its workers misread. A 2xx always means
the work is in Redis and a redelivery never enqueues twice. Job functions are referenced by dotted
name: the web process never imports the job code.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from redis.exceptions import NoScriptError
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from bot.events import Task, TaskEnvelope
from bot.rq_template import SLOTS, JobTemplate, build, now_stamp

TRIAGE_QUEUE = "archon-triage"
RUNS_QUEUE = "archon-runs"
DELIVERY_TTL = 4 * 24 * 3600  # GitHub lets people redeliver for 3 days; keep a day more.
TRIAGE_TIMEOUT = 120
#: How long the runs queue keeps a job's result and a failed job (`JobQueue._work`).
WORK_RESULT_TTL = 7 * 24 * 3600
WORK_FAILURE_TTL = 30 * 24 * 3600
#: A run job's automatic retries for transient errors (the network, Redis, GitHub's 5xx), with the seconds
#: between attempts; each attempt resumes at the node that failed. Other errors fail the run at once.
RUN_RETRY = Retry(max=2, interval=[15, 60])
#: Run ids that have (had) a run job: `bot.failures.reconcile` checks these for dead jobs.
LIVE_RUNS_KEY = "archon:live-runs"
ACTIVE_STATES = {
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
    JobStatus.CREATED,
}


#: Every triage job's options: the same for all, so one recorded template (`bot.rq_template`) serves all.
TRIAGE_FUNC = "bot.jobs.triage"
TRIAGE_RETRY = Retry(max=2, interval=[5, 30])
TRIAGE_ON_FAILURE = Callback("bot.jobs.on_triage_failure")


def _triage_id(delivery_id: str, index: int) -> str:
    return f"triage-{delivery_id}-{index}"


def _triage_args(task: Task) -> tuple[dict[str, Any]]:
    return (TaskEnvelope(task=task).model_dump(mode="json"),)


def _triage_description(task: Task) -> str:
    return f"triage {task.kind} {task.delivery_id}"


def _new_triage_job(queue: Queue, job_id: str, args: tuple[Any, ...], description: str) -> Job:
    """A triage job as RQ makes it; everything but the id, arguments and description is fixed here."""
    return queue.create_job(
        TRIAGE_FUNC,
        args=args,
        job_id=job_id,
        timeout=TRIAGE_TIMEOUT,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        retry=TRIAGE_RETRY,
        on_failure=TRIAGE_ON_FAILURE,
        description=description,
    )


class ActiveRunError(RuntimeError):
    """The same configuration is already queued or running on this issue."""

    def __init__(self, job: Job, status: str) -> None:
        super().__init__(f"job {job.id} is {status}")
        self.job = job
        self.status = status


#: Set the delivery key if it is new and, only then, run the `also` commands (ARGV[3 .. 2 + ARGV[2]], each
#: as its argument count and its arguments) and write each job from the template (`bot.rq_template`),
#: its `SLOTS` values after them.
#: 1 if they ran, 0 if the delivery was seen before. Atomic like MULTI/EXEC (a script runs alone), and
#: like it without rollback: RQ's writes cannot fail on types they wrote themselves.
_ACCEPT_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i, last = 3, 2 + tonumber(ARGV[2])
while i <= last do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
while i <= #ARGV do
  local v = {unpack(ARGV, i, i + %(slots)d - 1)}
%(job)s
  i = i + %(slots)d
end
return 1
"""
#: A command run with an accepted delivery's enqueue: its name and arguments (`bot.metrics.increment`).
Also = Sequence[str | int]


def script_args(ttl: int, also: Sequence[Also], jobs: Sequence[Sequence[Any]]) -> list[Any]:
    """ARGV of the accept script: the TTL, the `also` commands (their total length first, then each as
    its length and its arguments), then each job's slot values."""
    args: list[Any] = [ttl, sum(len(command) + 1 for command in also)]
    for command in also:
        args.append(len(command))
        args.extend(command)
    for values in jobs:
        args.extend(values)
    return args


def connect(url: str) -> redis.Redis:
    """A client that fails fast: the web handler must answer 503 quickly when Redis is away."""
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


class _Line(threading.local):
    """One thread's own Redis connection for the accept script, and the process it was made in."""

    connection: redis.connection.AbstractConnection | None = None
    pid: int = 0


@dataclass
class JobQueue:
    connection: redis.Redis

    @cached_property
    def triage(self) -> Queue:
        return Queue(TRIAGE_QUEUE, connection=self.connection)

    @cached_property
    def runs(self) -> Queue:
        return Queue(RUNS_QUEUE, connection=self.connection)

    @cached_property
    def _triage_template(self) -> JobTemplate:
        return build(self.triage, _new_triage_job)

    @cached_property
    def _accept(self) -> redis.commands.core.Script:
        job = textwrap.indent(self._triage_template.lua(), "  ")
        return self.connection.register_script(_ACCEPT_SCRIPT % {"slots": len(SLOTS), "job": job})

    @cached_property
    def _lines(self) -> _Line:
        return _Line()

    def _line(self) -> redis.connection.AbstractConnection:
        """This thread's connection for the accept script, made by the client's pool with the client's
        settings (timeouts, health checks, retry, connection class) but held by the thread: a checkout
        and release per call, with the client's per-command bookkeeping, cost the web handler more CPU
        than the round trip they wrap (docs/performance.md, front door). Made anew in a forked child."""
        line = self._lines
        if line.connection is None or line.pid != os.getpid():
            line.connection, line.pid = self.connection.connection_pool.make_connection(), os.getpid()
        connection = line.connection
        # What the pool checks before it lends a connection: one that has something to read (the server
        # closed it while it was idle, e.g. a Redis restart) is replaced, not used for the first attempt.
        try:
            connection.connect()
            if connection.can_read():
                raise redis.ConnectionError("connection has unread data")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
            connection.connect()
        return connection

    def _run_accept(self, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of the accept script on this thread's connection, with the connection's own retry
        (a failed attempt disconnects; the next one reconnects). A server that lost the script (a
        restart, SCRIPT FLUSH) gets it loaded again, as redis-py's `Script` does."""
        script, connection = self._accept, self._line()

        def attempt() -> Any:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return connection.read_response()

        def call() -> Any:
            return connection.retry.call_with_retry(attempt, lambda _error: connection.disconnect())

        try:
            return call()
        except NoScriptError:
            script.sha = self.connection.script_load(script.script)
            return call()

    def ping(self) -> bool:
        return bool(self.connection.ping())

    def accept_delivery(
        self, delivery_id: str, tasks: Sequence[Task], also: Sequence[Also] = ()
    ) -> list[str] | None:
        """Enqueue a delivery's tasks exactly once, in one round trip. None if this delivery was seen
        before. `also` are commands (the web's delivery count) that run only with the enqueue, in the
        same script, so they cost no round trip of their own."""
        template, stamp = self._triage_template, now_stamp()
        job_ids = [_triage_id(delivery_id, index) for index in range(len(tasks))]
        jobs = [
            template.values(job_id, _triage_args(task), _triage_description(task), stamp, stamp)
            for job_id, task in zip(job_ids, tasks, strict=True)
        ]
        key = f"archon:delivery:{delivery_id}"
        if not self._run_accept([key], script_args(DELIVERY_TTL, also, jobs)):
            return None
        return job_ids

    @staticmethod
    def _triage_job(queue: Queue, task: Task, index: int) -> Job:
        """The job RQ itself would make for a task (what the accept script writes, field for field)."""
        args, description = _triage_args(task), _triage_description(task)
        return _new_triage_job(queue, _triage_id(task.delivery_id, index), args, description)

    def active_status(self, job_id: str) -> str | None:
        """The RQ status of a job if it is queued or running, else None."""
        try:
            status = Job.fetch(job_id, connection=self.connection).get_status()
        except NoSuchJobError:
            return None
        return JobStatus(status).value if status in ACTIVE_STATES else None

    def enqueue_run(self, job_id: str, run_id: str, timeout: int) -> Job:
        """Enqueue a run under its derived job id; `ActiveRunError` if that id is queued or running.

        RQ's `unique` enqueue is atomic but also refuses ids of finished jobs, which should run again:
        those are deleted and the enqueue is tried once more.
        """
        for _ in range(2):
            try:
                job = self._enqueue_run(job_id, run_id, timeout)
                self.track_run(run_id)
                return job
            except DuplicateJobError:
                job = Job.fetch(job_id, connection=self.connection)
                status = job.get_status()
                if status in ACTIVE_STATES:
                    raise ActiveRunError(job, JobStatus(status).value) from None
                job.delete()
        raise RuntimeError(f"could not enqueue {job_id}: it keeps reappearing")

    def track_run(self, run_id: str) -> None:
        """Remember that a run has a job, so reconciliation checks on it until the run ends."""
        self.connection.zadd(LIVE_RUNS_KEY, {run_id: time.time()})

    def _work(self, func: str, **options: Any) -> Job:
        """A job on the runs queue. Its result is kept a week and its failure a month: what `/archon
        status`, reconciliation and debugging read long after the job ended."""
        return self.runs.enqueue_call(
            func, result_ttl=WORK_RESULT_TTL, failure_ttl=WORK_FAILURE_TTL, **options
        )

    def _enqueue_run(self, job_id: str, run_id: str, timeout: int) -> Job:
        return self._work(
            "bot.jobs.execute_run",
            args=(run_id,),
            job_id=job_id,
            unique=True,
            timeout=timeout,
            retry=RUN_RETRY,
            on_failure=Callback("bot.jobs.on_run_failure"),
            on_stopped=Callback("bot.jobs.on_run_stopped"),
            meta={"run_id": run_id},
            description=f"run {run_id}",
        )

    def enqueue_revision(self, job_id: str, run_id: str, number: int, timeout: int) -> Job | None:
        """A revision of a run's pull request; None when its job is already queued or running (a retried
        triage job). Its id is derived from the delivery, so a redelivery never revises twice."""
        if self.active_status(job_id) is not None:
            return None
        self.track_run(run_id)
        return self._work(
            "bot.jobs.execute_revision",
            args=(run_id, number),
            job_id=job_id,
            timeout=timeout,
            retry=RUN_RETRY,
            on_failure=Callback("bot.jobs.on_revision_failure"),
            meta={"run_id": run_id, "revision": number},
            description=f"revision {number} of run {run_id}",
        )

    def enqueue_bench(self, bench_id: str) -> Job:
        """The benchmark's first job: explore, estimate, fan the cells out."""
        return self._work(
            "bot.bench.jobs.bench_start",
            args=(bench_id,),
            job_id=f"bench-{bench_id}-start",
            timeout=3600,
            on_failure=Callback("bot.bench.jobs.on_bench_start_failure"),
            description=f"bench {bench_id} start",
        )

    def enqueue_evaluation(self, task: Task, judges: Sequence[str], timeout: int) -> Job:
        """An evaluation of a pull request, on the runs queue (it calls models; triage stays quick)."""
        return self._work(
            "bot.jobs.evaluate_pull",
            args=(TaskEnvelope(task=task).model_dump(mode="json"), list(judges)),
            job_id=f"eval-{task.delivery_id}",
            timeout=timeout,
            on_failure=Callback("bot.jobs.on_evaluate_failure"),
            description=f"evaluate {task.delivery_id}",
        )

    def cancel(self, job_id: str) -> str | None:
        """Stop a queued or running job. Returns the status it had, or None if it was not active."""
        from rq.command import send_stop_job_command

        status = self.active_status(job_id)
        if status is None:
            return None
        job = Job.fetch(job_id, connection=self.connection)
        if status == JobStatus.STARTED:
            send_stop_job_command(self.connection, job_id)
        else:
            job.cancel()
        return status
