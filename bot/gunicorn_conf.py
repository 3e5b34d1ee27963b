"""gunicorn's configuration from Archon Bot's settings (Procfile: `gunicorn -c python:bot.gunicorn_conf …`).

gunicorn reads only the environment and its own flags, so `PORT`, `WEB_CONCURRENCY`, `LOG_LEVEL` and
`LOG_FORMAT` in a `.env` file would be ignored without this module; here they come from `Settings`, like
everywhere else. Command-line flags still win (`archon-bot serve` passes `--bind`). gunicorn's own
loggers (errors, access lines) propagate to the root handler of bot/logs.py, so every line of the web
process is one format, on stderr, redacted.

This module is an entry point (gunicorn imports it once, in the master, before forking workers): reading
settings here is the factory's job, not work at import time of a library module.
"""

from __future__ import annotations

from pydantic import ValidationError

from bot.logs import logging_config
from bot.secrets import Redactor, install, install_log_redaction
from bot.settings import load_settings

try:
    _settings = load_settings()
except ValidationError as _error:
    from bot.cli import ERROR_LINE, error_message

    raise SystemExit(ERROR_LINE.format(message=error_message(_error))) from None

install(Redactor.from_settings(_settings))
install_log_redaction()

bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.web_concurrency
#: Threads let one worker's requests overlap their Redis round trip: measured with
#: scripts/bench_front_door.py (2 cores, 2 workers), gthread × 4 served 830–960 deliveries/s at
#: concurrency 8 against 610–660 for sync workers, and 710–890 against 650–660 at 32.
worker_class = "gthread"
threads = 4
loglevel = _settings.log_level.lower()
accesslog = "-"
#: gunicorn's default line plus the delivery id: the one line the web process writes per accepted delivery
#: (bot/web.py logs its own only for what went wrong), and it finds the delivery on GitHub's side.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" delivery=%({x-github-delivery}i)s'
)
errorlog = "-"
logconfig_dict = logging_config(_settings.log_level, _settings.log_format)
