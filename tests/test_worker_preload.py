"""An RQ worker imports the jobs' module before it forks, so a work-horse does not import it afresh for
every job (docs/performance.md, concurrency). A real `archon-bot worker --burst` on a private Redis."""

from __future__ import annotations

import redis
from rq import Queue

from tests.support import app_key
from tests.test_cli import ROOT, clean_env, cli

QUEUE = "archon-preload-test"


def test_a_work_horse_starts_with_the_jobs_module_already_loaded(tmp_path, redis_server) -> None:
    connection = redis.Redis.from_url(redis_server.url)
    job = Queue(QUEUE, connection=connection).enqueue(
        "tests.worker_probe.modules_loaded", "bot.jobs", "bot.workflow"
    )
    private, _ = app_key()
    env = clean_env(
        tmp_path,
        REDIS_URL=redis_server.url,
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY=private,
        PYTHONPATH=str(ROOT),
    )
    done = cli("worker", "--queues", QUEUE, "--burst", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job.refresh()
    assert job.return_value() == {"bot.jobs": True, "bot.workflow": True}, done.stderr[-2000:]
