"""One failure path for every job: tell the user on GitHub, log with the job's ids, clean up.

Every RQ job of the bot (triage, run, evaluate, the benchmark's start, cells and report) has a failure
callback in `bot.jobs` or `bot.bench.jobs` that is a few lines long: it asks `failure_of` for the
reason (None while RQ will try again) and hands it to one of the `tell_*` / `fail_*` functions here.
The same callbacks are reached three more ways, so a job never dies silently:

- a work-horse killed mid-job (out of memory, the agent's own `kill`): RQ calls no callback for it, so
  the worker's `work_horse_killed_handler` (bot/worker.py) calls the job's callback with `WorkerLost`;
- a whole worker gone (its machine, a SIGKILL): RQ's registry cleanup calls it with AbandonedJobError
  once the job's heartbeat expires;
- anything else that left a run "queued" or "running" without a live job (Redis restarted, a callback
  that could not reach GitHub): `reconcile`, run in every worker's maintenance, fails those runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from rq.callbacks import execute_failure_callback
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import UnixSignalDeathPenalty

from bot.logs import log_context
from bot.metrics import count, observe_run
from bot.queue import LIVE_RUNS_KEY
from bot.runs import Revision, RunRecord, RunState, RunStore, now
from bot.secrets import describe_error

log = logging.getLogger(__name__)

# --- what people read ---------------------------------------------------------------------------

#: The run's reason (the status comment adds "comment `/archon retry` to resume from `<node>`").
WORKER_LOST = "the worker running this job stopped (it was killed or its machine went away)"
HORSE_KILLED = "the worker running this job stopped: its process was killed ({how})"
OUT_OF_MEMORY_HINT = ", likely for running out of memory"
JOB_LOST = "the worker running this job stopped: its job is no longer in the queue ({what})"
JOB_ENDED = "the worker running this job stopped: its job ended as {status} without saying how the run ended"
STOPPED = "Stopped while running."
TIMED_OUT = "timed out after {timeout}s (hung or too slow) and was stopped"
TRIAGE_FAILED = (
    "I could not handle this request because of an error on my side ({reason}). Nothing was started; "
    "repeat the command or re-apply the label to try again."
)
EVALUATE_FAILED = (
    "the evaluation could not run because of an error on my side ({reason}). No review was posted; "
    "comment `/archon evaluate` to try again."
)
REVISION_FAILED = (
    "revision {number} ({kind}) failed because of an error on my side ({reason}). The pull request keeps "
    "the commits it already had; comment `/archon {kind} …` again to retry."
)
BENCH_START_FAILED = "{reason}. Apply `archon:bench` again or repeat the command to retry."
BENCH_REPORT_FAILED = (
    "the report could not be made ({reason}). The cells' results are kept; repeat the command to run "
    "the benchmark again."
)

#: A run found dead is failed only after it looked dead this long: a queued record may briefly have no
#: job while `/archon retry` requeues it.
QUEUED_GRACE_S = 120
RECONCILE_LOCK = "archon:reconcile:lock"
SUSPECTS_KEY = "archon:reconcile:suspects"
_ENDED = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED}
#: Resident memory above this when a horse was SIGKILLed points at the kernel's OOM killer.
_OOM_HINT_KB = 512 * 1024


class WorkerLost(RuntimeError):
    """Given to a job's failure callback when its process died without raising (killed, lost)."""


@dataclass(frozen=True)
class Failure:
    """A job's last failure, ready to tell: one line for people, the ids for the log."""

    job_id: str
    reason: str
    run_id: str | None = None
    delivery_id: str | None = None


# --- deciding ----------------------------------------------------------------------------------


def reason_of(exc_type: type | None, value: BaseException | None, job: Job | None = None) -> str:
    """One short line for people (never a secret: `describe_error` redacts)."""
    name = exc_type.__name__ if exc_type else ""
    if name == "AbandonedJobError":
        return WORKER_LOST
    if name == "JobTimeoutException" and job is not None:
        return TIMED_OUT.format(timeout=job.timeout)
    if isinstance(value, WorkerLost):
        return str(value)
    return describe_error(value)


def is_transient(value: BaseException | None) -> bool:
    """Errors worth RQ's automatic retry: the network, Redis or GitHub's servers briefly away.
    A timeout, a dead process or a bug would only fail again (and a timeout would cost hours)."""
    from github import GithubException
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    transient = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)
    transient += (RequestsConnectionError, Timeout)
    seen: set[int] = set()
    while value is not None and id(value) not in seen:  # also when wrapped (`raise … from error`)
        seen.add(id(value))
        if isinstance(value, transient):
            return True
        if isinstance(value, GithubException) and (value.status >= 500 or value.status == 429):
            return True
        value = value.__cause__ or value.__context__
    return False


def failure_of(
    job: Job, exc_type: type | None, value: BaseException | None, *, any_error: bool = False
) -> Failure | None:
    """The failure to tell, or None if RQ will run the job again. Unless `any_error` (triage: quick and
    idempotent, so any error is worth another go), errors that are not transient use up the job's
    retries here, so RQ (which decides right after the callback) does not retry them."""
    reason = reason_of(exc_type, value, job)
    ids = _ids(job)
    if (job.retries_left and not (any_error or is_transient(value))) or isinstance(value, WorkerLost):
        job.retries_left = 0
    if job.retries_left:
        with log_context(**ids):
            log.warning("job %s failed, RQ retries it (%s left): %s", job.id, job.retries_left, reason)
        count(job.connection, "job_retries", function=job.func_name.rsplit(".", 1)[-1])
        return None
    return Failure(job_id=job.id, reason=reason, run_id=ids["run_id"], delivery_id=ids["delivery_id"])


def _ids(job: Job) -> dict[str, Any]:
    delivery = job.meta.get("delivery_id")
    if delivery is None and job.args and isinstance(job.args[0], dict):
        delivery = (job.args[0].get("task") or {}).get("delivery_id")
    return {"job_id": job.id, "run_id": job.meta.get("run_id"), "delivery_id": delivery}


def report(failure: Failure, tell: Callable[[str], object] | None, what: str) -> None:
    """Log the failure with its ids, then tell people. Telling may itself fail (GitHub away): that is
    logged and swallowed, so RQ still records the job's own error, not the callback's."""
    with log_context(job_id=failure.job_id, run_id=failure.run_id, delivery_id=failure.delivery_id):
        log.error("%s failed: %s", what, failure.reason)
        if tell is None:
            return
        try:
            tell(failure.reason)
        except Exception:
            log.exception("could not tell GitHub that %s failed", what)


# --- runs --------------------------------------------------------------------------------------


def fail_run(
    connection: redis.Redis,
    run_id: str,
    reason: str | None,
    *,
    state: RunState = RunState.FAILED,
    summary: str | None = None,
) -> RunRecord | None:
    """End a run that its job can no longer end: the record (the node that was running marked failed,
    so `/archon retry` resumes there), then the status comment. Idempotent: a run already ended is left
    alone, so the killed-horse handler, RQ's cleanup and `reconcile` may all arrive."""
    record = RunStore(connection).update(run_id, partial(_end, reason, state, summary))
    if record is not None and record.bench_id is None:  # a cell is shown on its benchmark's status comment
        _publish(connection, record)
    return record


def _end(reason: str | None, state: RunState, summary: str | None, record: RunRecord) -> bool:
    """`fail_run`'s change to the stored record; False when there is nothing to change. A record ended
    by another writer (`/archon cancel`) keeps its state and words; only a node left running is closed."""
    if not record.state.active:
        return record.close_running(reason or "stopped")
    record.state, record.finished_at, record.error = state, now(), reason
    record.summary = summary or record.summary
    record.close_running(reason or "stopped")
    return True


def _publish(connection: redis.Redis, record: RunRecord) -> None:
    """The final status comment, retried until it lands (`GitHubPublisher.finish`), and the metrics."""
    from bot.github.auth import installation_github
    from bot.github.forge import RepoForge
    from bot.publish import GitHubPublisher
    from bot.settings import load_settings

    forge = RepoForge(installation_github(load_settings(), record.installation_id), record.config.repo)
    GitHubPublisher(forge, RunStore(connection), lambda: False).finish(record)
    observe_run(connection, record)


# --- revisions ---------------------------------------------------------------------------------


def fail_revision(connection: redis.Redis, run_id: str, number: int, reason: str) -> Revision | None:
    """End a revision its job can no longer end: failed in the run record (Redis first), then a reply
    where it was asked (its thread, else the pull request) with the reason and how to retry. Idempotent:
    a revision already ended is left alone; the reply carries the revision's marker, so it is posted once."""
    from bot.github.auth import installation_github
    from bot.github.forge import RepoForge
    from bot.publish import post_revision_check, pull_head_or_none
    from bot.revise import post_reply
    from bot.settings import load_settings

    store = RunStore(connection)
    record = store.load(run_id)
    if record is None or not 0 < number <= len(record.revisions):
        return None
    revision = record.revisions[number - 1]
    if not revision.state.active:
        return None
    revision.state, revision.summary, revision.finished_at = RunState.FAILED, reason, now()
    store.save(record)
    forge = RepoForge(installation_github(load_settings(), record.installation_id), record.config.repo)
    head = pull_head_or_none(forge, record.pr_number)
    if head is not None:  # its `Archon run` check run would otherwise stay "in progress" for ever
        post_revision_check(forge, record, revision, head)
    text = REVISION_FAILED.format(number=number, kind=revision.kind, reason=reason)
    post_reply(forge, record, revision, f"@{revision.requested_by} {text}")
    return revision


# --- replies (triage, evaluate) ----------------------------------------------------------------


def replier(task: Any, template: str) -> Callable[[str], None]:
    """Answers the person who asked (a `CommandTask`) with `template` and the reason, once per delivery:
    the reply's marker makes a second answer an edit of the first."""

    def tell(reason: str) -> None:
        from bot.github.auth import installation_github
        from bot.github.forge import RepoForge
        from bot.settings import load_settings
        from bot.triage import REPLY_KIND

        forge = RepoForge(installation_github(load_settings(), task.installation_id), task.repo)
        text = f"@{task.sender} " + template.format(reason=reason)
        forge.upsert_comment(task.issue, REPLY_KIND, task.delivery_id, text)

    return tell


# --- dead processes ----------------------------------------------------------------------------


def horse_killed_reason(ret_val: int | None, rusage: Any) -> str:
    """How a work-horse died, for people: the signal, and a hint when it looks like the OOM killer."""
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        import signal

        number = os.WTERMSIG(ret_val)
        how = f"signal {number}, {signal.Signals(number).name}" if number in signal.valid_signals() else ""
        how = how or f"signal {number}"
        if number == signal.SIGKILL and getattr(rusage, "ru_maxrss", 0) > _OOM_HINT_KB:
            how += OUT_OF_MEMORY_HINT
    else:
        how = f"exit status {os.WEXITSTATUS(ret_val) if ret_val is not None else 'unknown'}"
    return HORSE_KILLED.format(how=how)


def call_failure_callback(job: Job, reason: str) -> None:
    """Run a job's own failure callback for a death RQ does not report to it. A killed process is not
    retried (it would most likely be killed again); the user retries with `/archon retry`."""
    job.retries_left = 0
    if job.get_status() == JobStatus.STARTED:  # first, so `/archon retry` never finds it still started
        job.set_status(JobStatus.FAILED)
    try:
        execute_failure_callback(job, UnixSignalDeathPenalty, WorkerLost, WorkerLost(reason), None)
    except Exception:
        log.exception("the failure callback of job %s raised", job.id)


def work_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """RQ's `work_horse_killed_handler`: the job's process died mid-run; fail it at once."""
    reason = horse_killed_reason(ret_val, rusage)
    with log_context(**_ids(job)):
        log.error("work-horse %s of job %s died: %s", retpid, job.id, reason)
    call_failure_callback(job, reason)


# --- reconciliation ----------------------------------------------------------------------------


def dead_reason(connection: redis.Redis, run_id: str, job_id: str, at: float | None = None) -> str | None:
    """Why this run's job can no longer end it (None: a live job has it). Shared by `reconcile` and
    `/archon retry` (which resumes a run stuck "running" when this says it is dead)."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return JOB_LOST.format(what="it expired or Redis lost it")
    if job.meta.get("run_id") != run_id:
        return JOB_LOST.format(what="its job id now belongs to another run")
    status = job.get_status()
    if status in _ENDED:
        return JOB_ENDED.format(status=JobStatus(status).value)
    if status == JobStatus.STARTED and not _in_live_hands(job, at):
        return WORKER_LOST
    if status == JobStatus.QUEUED and not _in_queue(connection, job):
        return JOB_LOST.format(what="it is marked queued but is in no queue")
    return None


def _in_live_hands(job: Job, at: float | None) -> bool:
    """A started job whose heartbeat has not expired (workers renew it every few seconds)."""
    registry = StartedJobRegistry(job.origin, connection=job.connection)
    if job.id not in registry.get_job_ids(cleanup=False):
        return False
    return job.id not in registry.get_expired_job_ids(at if at is not None else time.time())


def _in_queue(connection: redis.Redis, job: Job) -> bool:
    from rq import Queue

    return connection.lpos(Queue(job.origin, connection=connection).key, job.id) is not None


def reconcile(connection: redis.Redis, at: float | None = None) -> list[str]:
    """Fail every run whose record says queued/running but whose job is dead. Returns their ids.

    Safe with several workers: one pass at a time holds a short Redis lock; `fail_run` is idempotent.
    `at` stands for "now" (tests look minutes ahead instead of waiting).
    """
    lock = connection.lock(RECONCILE_LOCK, timeout=120, blocking=False)
    if not lock.acquire():
        return []
    try:
        return [run_id for run_id in _live_run_ids(connection) if _reconcile_one(connection, run_id, at)]
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired meanwhile: the next pass takes it
            lock.release()


def _live_run_ids(connection: redis.Redis) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else i for i in connection.zrange(LIVE_RUNS_KEY, 0, -1)]


def _reconcile_one(connection: redis.Redis, run_id: str, at: float | None) -> bool:
    record = RunStore(connection).load(run_id)
    if record is None or not record.state.active:
        connection.zrem(LIVE_RUNS_KEY, run_id)
        connection.hdel(SUSPECTS_KEY, run_id)
        return False
    reason = dead_reason(connection, run_id, record.job_id, at)
    if reason is None or not _confirmed(connection, record, at):
        if reason is None:
            connection.hdel(SUSPECTS_KEY, run_id)
        return False
    connection.hdel(SUSPECTS_KEY, run_id)
    with log_context(run_id=run_id, job_id=record.job_id, delivery_id=_delivery(record)):
        log.error("run %s has no live job (%s): failing it", run_id, reason)
    _fail_dead(connection, record, reason)
    return True


def _confirmed(connection: redis.Redis, record: RunRecord, at: float | None) -> bool:
    """A running record with a dead job is dead now; a queued one only once it stayed so for a grace
    period (`/archon retry` saves the record just before it enqueues the job)."""
    if record.state is RunState.RUNNING:
        return True
    moment = at if at is not None else time.time()
    first = connection.hget(SUSPECTS_KEY, record.run_id)
    if first is None:
        connection.hset(SUSPECTS_KEY, record.run_id, moment)
        return False
    return moment - float(first) >= QUEUED_GRACE_S


def _fail_dead(connection: redis.Redis, record: RunRecord, reason: str) -> None:
    """Through the job's own failure callback when the job still exists (a benchmark cell updates its
    benchmark), else straight to `fail_run`."""
    try:
        job = Job.fetch(record.job_id, connection=connection)
    except NoSuchJobError:
        job = None
    if job is not None and job.meta.get("run_id") == record.run_id and job.failure_callback is not None:
        call_failure_callback(job, reason)
    else:
        fail_run(connection, record.run_id, reason)


def _delivery(record: RunRecord) -> str | None:
    return record.issue.delivery_id if record.issue else None
