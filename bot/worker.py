"""`archon-bot worker`: RQ workers for the two queues.

One `archon-bot worker` process is enough for a small deployment: it supervises a worker that only
takes triage jobs and N workers for runs, so a reaction or a reply never waits behind a long run.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

import redis
from rq import Queue, Worker

from bot.failures import reconcile, work_horse_killed
from bot.queue import RUNS_QUEUE, TRIAGE_QUEUE, connect
from bot.sandbox import Sandbox, SandboxPolicy, SandboxUnavailableError
from bot.secrets import redact
from bot.settings import ConfigurationError, Settings
from bot.supervisor import Supervisor

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 60


def _redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL must be set for workers (`archon-bot serve` embeds Redis)")
    return settings.redis_url


class RedactingWorker(Worker):
    """RQ keeps a failed job's traceback in Redis (`rq info`, dashboards); a secret in an exception's
    text must not live there, so it is redacted on the way in.

    Its maintenance also reconciles runs with their jobs (`bot.failures.reconcile`): a run whose record
    says queued or running but whose job is dead is failed and told, whichever machine lost it."""

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):  # type: ignore[override]
        return super().handle_job_failure(
            job, queue, started_job_registry, redact(exc_string), execution=execution
        )

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # RQ's cleanup first: it tells abandoned jobs' callbacks itself
        try:
            failed = reconcile(self.connection)
        except Exception:  # maintenance must never stop the worker (Redis away: the next pass retries)
            log.exception("reconciling runs with their jobs failed")
            return
        if failed:
            log.warning("reconciliation failed %d run(s) whose job was dead: %s", len(failed), failed)


def make_worker(connection: redis.Redis, queues: Sequence[str]) -> RedactingWorker:
    """The worker `archon-bot worker` runs. A work-horse killed mid-job (out of memory, the agent's own
    `kill`) fails its job at once through the job's failure callback (RQ alone would call none)."""
    return RedactingWorker(
        [Queue(name, connection=connection) for name in queues],
        connection=connection,
        # Registry maintenance is what notices a job whose worker died; RQ's default pass is every 10 min.
        maintenance_interval=MAINTENANCE_INTERVAL_S,
        work_horse_killed_handler=work_horse_killed,
    )


def check_sandbox(settings: Settings) -> str:
    """Say once how repository commands will run; `ARCHON_SANDBOX=required` without bwrap stops here."""
    sandbox = Sandbox(SandboxPolicy.from_settings(settings))
    try:
        enabled = sandbox.enabled
    except SandboxUnavailableError as error:
        raise ConfigurationError(str(error)) from None
    line = sandbox.describe()
    (log.info if enabled else log.warning)("sandbox: %s", line)
    return line


#: What RQ imports by name inside every work-horse, after the fork (the jobs' functions).
JOB_MODULES = ("bot.jobs",)


def preload_jobs() -> None:
    """Import the jobs' module once, before the worker forks its work-horses.

    RQ resolves a job's function by its dotted name inside the horse, so without this every horse,
    triage and run alike, imports `bot.jobs` and what it pulls in afresh: 0.35 CPU s on an idle core,
    most of a triage job, and the one triage worker pays it per delivery in series (docs/performance.md,
    concurrency). Horses inherit the modules copy-on-write. The import starts no thread and opens no
    socket or file, so forking after it is safe."""
    for name in JOB_MODULES:
        importlib.import_module(name)


def run_worker(settings: Settings, queues: Sequence[str], burst: bool = False) -> int:
    """One RQ worker in this process. Fails fast on missing App credentials or a required sandbox."""
    settings.require_app_credentials()
    check_sandbox(settings)
    preload_jobs()
    worker = make_worker(connect(_redis_url(settings)), queues)
    worker.work(burst=burst, with_scheduler=True)
    return 0


def supervise_workers(settings: Settings, run_workers: int, burst: bool = False) -> int:
    """A triage-only worker plus `run_workers` run workers, as child processes."""
    settings.require_app_credentials()
    _redis_url(settings)
    check_sandbox(settings)
    extra = ["--burst"] if burst else []
    supervisor = Supervisor()
    supervisor.spawn_cli("triage-worker", "worker", "--queues", TRIAGE_QUEUE, *extra)
    for index in range(run_workers):
        supervisor.spawn_cli(f"run-worker-{index}", "worker", "--queues", RUNS_QUEUE, *extra)
    return supervisor.wait()
