"""The webhook endpoint (Flask). Verify, parse, decide, deduplicate, enqueue plain values, answer.

No GitHub API call sits between a delivery and its answer, so the handler takes milliseconds. Every 2xx
means the work is in Redis: when Redis is unreachable the answer is 503, and the delivery shows as
failed on GitHub, where it can be redelivered (GitHub does not retry on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import redis
from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from bot.events import Ignored, route
from bot.queue import JobQueue, connect
from bot.sandbox import Sandbox, SandboxPolicy
from bot.secrets import Redactor, install, install_log_redaction
from bot.settings import ConfigurationError, Settings, load_settings

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB.


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """Compare in constant time; a missing or non-sha256 header never matches."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body), header)


def _answer(code: int, **fields: Any) -> tuple[Response, int]:
    return jsonify(fields), code


def _payload(body: bytes, mimetype: str) -> dict[str, Any] | tuple[Response, int]:
    """The delivery's JSON object (GitHub sends `application/json` or a form with `payload=`)."""
    if mimetype == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("payload")
        if not values:
            return _answer(400, error="form delivery without a `payload` field")
        body = values[0].encode()
    elif mimetype != "application/json":
        return _answer(415, error=f"unsupported content type `{mimetype or 'none'}`; send application/json")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        return _answer(400, error=f"malformed JSON: {error}")
    if not isinstance(payload, dict):
        return _answer(400, error="the payload must be a JSON object")
    return payload


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """App factory (gunicorn: `bot.web:create_app()`). Refuses to build without a webhook secret."""
    settings = settings or load_settings()
    secret = settings.require_webhook_secret()
    # gunicorn loads the app with no other hook: its loggers (error and access) get redaction here.
    install(Redactor.from_settings(settings))
    install_log_redaction()
    if connection is None:
        if not settings.redis_url:
            raise ConfigurationError(
                "REDIS_URL must be set for the web process (`archon-bot serve` embeds one)"
            )
        connection = connect(settings.redis_url)
    queue = JobQueue(connection)
    # How this machine runs repository commands, said in every health answer (probed once).
    sandbox = Sandbox(SandboxPolicy.from_settings(settings)).describe()
    app = Flask("archon-bot")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        return _answer(413, error=f"payload larger than {MAX_BODY} bytes")

    @app.post(settings.webhook_path)
    def webhook() -> tuple[Response, int]:
        body = request.get_data(cache=False)
        if not signature_ok(secret, body, request.headers.get("X-Hub-Signature-256")):
            return _answer(401, error="missing or invalid X-Hub-Signature-256")
        event = request.headers.get("X-GitHub-Event")
        delivery = request.headers.get("X-GitHub-Delivery")
        if not event or not delivery:
            return _answer(400, error="X-GitHub-Event and X-GitHub-Delivery headers are required")
        payload = _payload(body, request.mimetype)
        if not isinstance(payload, dict):
            return payload
        return _dispatch(queue, settings, event, delivery, payload)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            queue.ping()
        except redis.RedisError as error:
            return _answer(
                503, status="unhealthy", redis=f"unreachable: {type(error).__name__}", sandbox=sandbox
            )
        return _answer(200, status="ok", redis="ok", sandbox=sandbox)

    return app


def _dispatch(
    queue: JobQueue, settings: Settings, event: str, delivery: str, payload: dict[str, Any]
) -> tuple[Response, int]:
    if event == "ping":
        return _answer(200, delivery=delivery, ok=True, zen=payload.get("zen"))
    try:
        decision = route(event, payload, delivery, settings.github_app_id)
    except (KeyError, TypeError, ValidationError) as error:
        log.warning("delivery %s (%s): malformed payload: %s", delivery, event, error)
        return _answer(400, delivery=delivery, error=f"payload is missing or has a malformed field: {error}")
    if isinstance(decision, Ignored):
        return _answer(200, delivery=delivery, ignored=decision.reason)
    try:
        job_ids = queue.accept_delivery(delivery, decision)
    except redis.RedisError as error:
        log.error("delivery %s not queued, Redis unreachable: %s", delivery, error)
        return _answer(503, delivery=delivery, error="queue unavailable; redeliver this delivery later")
    if job_ids is None:
        return _answer(200, delivery=delivery, duplicate=True, ignored="delivery was already received")
    log.info("delivery %s (%s) queued as %s", delivery, event, job_ids)
    return _answer(202, delivery=delivery, jobs=job_ids)
