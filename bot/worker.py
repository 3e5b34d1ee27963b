"""`archon-bot worker`: RQ workers for the two queues.

One `archon-bot worker` process is enough for a small deployment: it supervises a worker that only
takes triage jobs and N workers for runs, so a reaction or a reply never waits behind a long run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rq import Queue, Worker

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
    text must not live there, so it is redacted on the way in."""

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):  # type: ignore[override]
        return super().handle_job_failure(
            job, queue, started_job_registry, redact(exc_string), execution=execution
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


def run_worker(settings: Settings, queues: Sequence[str], burst: bool = False) -> int:
    """One RQ worker in this process. Fails fast on missing App credentials or a required sandbox."""
    settings.require_app_credentials()
    check_sandbox(settings)
    connection = connect(_redis_url(settings))
    queues_ = [Queue(name, connection=connection) for name in queues]
    # Registry maintenance is what notices a job whose worker died; RQ's default pass is every 10 min.
    worker = RedactingWorker(queues_, connection=connection, maintenance_interval=MAINTENANCE_INTERVAL_S)
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
