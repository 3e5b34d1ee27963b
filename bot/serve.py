"""`archon-bot serve`: the whole bot from one command.

With REDIS_URL unset it starts an embedded Redis (persisted under ARCHON_DATA_DIR/redis, so queued work
survives a restart), then the workers and the web server (gunicorn) as supervised child processes.
With REDIS_URL set it uses that Redis, and more web and worker processes can join from other machines.
"""

from __future__ import annotations

import logging
import os
import sys

from bot.redis_server import RedisServer
from bot.settings import Settings
from bot.supervisor import Supervisor

log = logging.getLogger(__name__)

GUNICORN_CONFIG = "python:bot.gunicorn_conf"


def serve(settings: Settings, host: str, port: int, run_workers: int) -> int:
    settings.require_webhook_secret()
    settings.require_app_credentials()
    env = dict(os.environ)
    embedded = None
    if not settings.redis_url:
        embedded = RedisServer(data_dir=settings.archon_data_dir.resolve() / "redis").start()
        env["REDIS_URL"] = embedded.url
        log.info("embedded Redis on %s (data in %s)", embedded.url, embedded.data_dir)
    supervisor = Supervisor(env)
    try:
        supervisor.spawn_cli("workers", "worker", "--run-workers", str(run_workers))
        supervisor.spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                GUNICORN_CONFIG,  # workers, log level and format from the settings, as in the Procfile
                "--bind",
                f"{host}:{port}",
                "bot.web:create_app()",
            ],
        )
        log.info("Archon Bot listening on http://%s:%s%s", host, port, settings.webhook_path)
        return supervisor.wait()
    finally:
        supervisor.stop()
        if embedded:
            embedded.stop()
