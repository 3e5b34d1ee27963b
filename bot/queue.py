"""The durable queue: RQ on Redis, with two queues so triage never waits behind a long run.

`accept_delivery` is the web handler's only write: it records the delivery id (SET NX, 3-day TTL) and
enqueues the triage jobs in one MULTI/EXEC transaction, so a 2xx always means the work is in Redis and
a redelivery never enqueues twice. Job functions are referenced by dotted name: the web process never
imports the job code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from bot.events import Task, TaskEnvelope

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


class ActiveRunError(RuntimeError):
    """The same configuration is already queued or running on this issue."""

    def __init__(self, job: Job, status: str) -> None:
        super().__init__(f"job {job.id} is {status}")
        self.job = job
        self.status = status


def connect(url: str) -> redis.Redis:
    """A client that fails fast: the web handler must answer 503 quickly when Redis is away."""
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)


@dataclass
class JobQueue:
    connection: redis.Redis

    @property
    def triage(self) -> Queue:
        return Queue(TRIAGE_QUEUE, connection=self.connection)

    @property
    def runs(self) -> Queue:
        return Queue(RUNS_QUEUE, connection=self.connection)

    def ping(self) -> bool:
        return bool(self.connection.ping())

    def accept_delivery(
        self,
        delivery_id: str,
        tasks: Sequence[Task],
        also: Callable[[redis.client.Pipeline], object] | None = None,
    ) -> list[str] | None:
        """Enqueue a delivery's tasks exactly once. None if this delivery was seen before. `also` adds
        commands to the same transaction (the web's delivery count), so they cost no round trip of
        their own."""
        key = f"archon:delivery:{delivery_id}"
        queue = self.triage
        jobs = [self._triage_job(queue, task, index) for index, task in enumerate(tasks)]
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    return None
                pipe.multi()
                pipe.set(key, "1", ex=DELIVERY_TTL)
                if also is not None:
                    also(pipe)
                for job in jobs:
                    queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()
            except redis.WatchError:
                return None  # the same delivery raced us and won
        return [job.id for job in jobs]

    @staticmethod
    def _triage_job(queue: Queue, task: Task, index: int) -> Job:
        return queue.create_job(
            "bot.jobs.triage",
            args=(TaskEnvelope(task=task).model_dump(mode="json"),),
            job_id=f"triage-{task.delivery_id}-{index}",
            timeout=TRIAGE_TIMEOUT,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=2, interval=[5, 30]),
            on_failure=Callback("bot.jobs.on_triage_failure"),
            description=f"triage {task.kind} {task.delivery_id}",
        )

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
