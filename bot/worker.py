"""`archon-bot worker`: RQ workers for the two queues.

One `archon-bot worker` process is enough for a small deployment: it supervises a worker that only
takes triage jobs and N workers for runs, so a reaction or a reply never waits behind a long run.
"""

from __future__ import annotations

from collections.abc import Sequence

from rq import Queue, Worker

from bot.queue import RUNS_QUEUE, TRIAGE_QUEUE, connect
from bot.settings import ConfigurationError, Settings
from bot.supervisor import Supervisor

MAINTENANCE_INTERVAL_S = 60


def _redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL must be set for workers (`archon-bot serve` embeds Redis)")
    return settings.redis_url


def run_worker(settings: Settings, queues: Sequence[str], burst: bool = False) -> int:
    """One RQ worker in this process. Fails fast on missing App credentials."""
    settings.require_app_credentials()
    connection = connect(_redis_url(settings))
    queues_ = [Queue(name, connection=connection) for name in queues]
    # Registry maintenance is what notices a job whose worker died; RQ's default pass is every 10 min.
    worker = Worker(queues_, connection=connection, maintenance_interval=MAINTENANCE_INTERVAL_S)
    worker.work(burst=burst, with_scheduler=True)
    return 0


def supervise_workers(settings: Settings, run_workers: int, burst: bool = False) -> int:
    """A triage-only worker plus `run_workers` run workers, as child processes."""
    settings.require_app_credentials()
    _redis_url(settings)
    extra = ["--burst"] if burst else []
    supervisor = Supervisor()
    supervisor.spawn_cli("triage-worker", "worker", "--queues", TRIAGE_QUEUE, *extra)
    for index in range(run_workers):
        supervisor.spawn_cli(f"run-worker-{index}", "worker", "--queues", RUNS_QUEUE, *extra)
    return supervisor.wait()
