"""The webhook endpoint (Flask). Verify, parse, decide, deduplicate, enqueue plain values, answer.

No GitHub API call sits between a delivery and its answer, so the handler takes milliseconds. Every 2xx
means the work is in Redis: when Redis is unreachable the answer is 503, and the delivery shows as
failed on GitHub, where it can be redelivered (GitHub does not retry on its own). Nothing of a body is
read before its signature is checked; a signed body is still validated (`bot.payloads`) and any shape
the bot cannot read is a 4xx naming the reason, never a 5xx.

Beside the webhook: `/healthz` (liveness), `/readyz` (Redis and a live worker per queue) and `/metrics`
(Prometheus; counts kept in Redis by `bot.metrics`). See docs/monitoring.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Any
from urllib.parse import parse_qs

import redis
from flask import Flask, Request, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from bot.events import Ignored, route
from bot.logs import log_context
from bot.metrics import QUEUES, Collector, MetricsStore, Outcome, increment, live_workers
from bot.payloads import PayloadError, describe, loads
from bot.queue import JobQueue, connect
from bot.sandbox import Sandbox, SandboxPolicy
from bot.secrets import Redactor, install, install_log_redaction
from bot.settings import ConfigurationError, Settings, load_settings

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB.
#: GitHub's delivery ids are GUIDs; the id becomes part of Redis keys and RQ job ids ([A-Za-z0-9_-]).
DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")

BAD_SIGNATURE = "missing or invalid X-Hub-Signature-256"
MISSING_HEADERS = "X-GitHub-Event and X-GitHub-Delivery headers are required"
BAD_DELIVERY_ID = "X-GitHub-Delivery must be 1-100 letters, digits, `-` or `_`"
NO_FORM_PAYLOAD = "form delivery without a `payload` field"
UNSUPPORTED_TYPE = "unsupported content type `{mimetype}`; send application/json"
BAD_PAYLOAD = "malformed payload: {details}"
UNAVAILABLE = "queue unavailable; redeliver this delivery later"
TOO_LARGE = f"payload larger than {MAX_BODY} bytes"
NO_WORKER = "no live worker on {queues}: start `archon-bot worker` (see `rq info -u $REDIS_URL`)"

#: How the webhook answered: what to count, the status code, and the JSON body.
Answer = tuple[Outcome, int, dict[str, Any]]


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """Compare in constant time, as bytes: a missing, non-sha256 or non-ASCII header never matches.

    (`hmac.compare_digest` refuses str with non-ASCII characters by raising TypeError: a 500 before
    authentication.)
    """
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "surrogatepass"))


def _answer(code: int, **fields: Any) -> tuple[Response, int]:
    return jsonify(fields), code


class _UnsupportedType(PayloadError):
    """A body in a content type GitHub does not send (415)."""


def _payload(body: bytes, mimetype: str) -> dict[str, Any]:
    """The delivery's JSON object (GitHub sends `application/json` or a form with `payload=`).

    Raises PayloadError with the reason; `_UnsupportedType` for other content types.
    """
    if mimetype == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("payload")
        if not values:
            raise PayloadError(NO_FORM_PAYLOAD)
        return loads(values[0])
    if mimetype != "application/json":
        raise _UnsupportedType(UNSUPPORTED_TYPE.format(mimetype=(mimetype or "none")[:100]))
    return loads(body)


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
    metrics = MetricsStore(connection)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(connection))
    # How this machine runs repository commands, said in every health answer (probed once).
    sandbox = Sandbox(SandboxPolicy.from_settings(settings)).describe()
    app = Flask("archon-bot")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def reply(answer: Answer) -> tuple[Response, int]:
        outcome, code, fields = answer
        if outcome is not Outcome.ACCEPTED:  # an accepted one was counted in its accept transaction
            metrics.count(DELIVERIES, outcome=outcome.value)
        return jsonify(fields), code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        return reply((Outcome.TOO_LARGE, 413, {"error": TOO_LARGE}))

    @app.post(settings.webhook_path)
    def webhook() -> tuple[Response, int]:
        # The proxy resolves a context variable on every attribute: once here, not once a header.
        return reply(_receive(request._get_current_object(), queue, metrics, settings, secret))

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        """Liveness: this process answers and reaches Redis (a load balancer's check)."""
        try:
            queue.ping()
        except redis.RedisError as error:
            return _answer(
                503, status="unhealthy", redis=f"unreachable: {type(error).__name__}", sandbox=sandbox
            )
        return _answer(200, status="ok", redis="ok", sandbox=sandbox)

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: Redis answers and every queue has a live worker, so accepted work will run."""
        try:
            queue.ping()
            workers = {name: live_workers(connection, name) for name in QUEUES}
        except redis.RedisError as error:
            reason = f"Redis unreachable: {type(error).__name__}"
            return _answer(503, status="not ready", redis="unreachable", reason=reason)
        if idle := [name for name, live in workers.items() if live == 0]:
            reason = NO_WORKER.format(queues=", ".join(idle))
            return _answer(503, status="not ready", redis="ok", workers=workers, reason=reason)
        return _answer(200, status="ready", redis="ok", workers=workers)

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return app


#: The counter of deliveries by how the webhook answered (`archon_webhook_deliveries_total`).
DELIVERIES = "webhook_deliveries"


#: Counts an accepted delivery inside its accept script: no round trip of its own, never a duplicate.
_COUNT_ACCEPTED = (increment(DELIVERIES, outcome=Outcome.ACCEPTED.value),)


def _receive(
    req: Request, queue: JobQueue, metrics: MetricsStore, settings: Settings, secret: bytes
) -> Answer:
    """Verify, then parse: nothing of an unsigned body is read."""
    body = req.get_data(cache=False)
    headers = req.headers
    if not signature_ok(secret, body, headers.get("X-Hub-Signature-256")):
        return Outcome.UNAUTHORIZED, 401, {"error": BAD_SIGNATURE}
    event = headers.get("X-GitHub-Event")
    delivery = headers.get("X-GitHub-Delivery")
    if not event or not delivery:
        return Outcome.BAD_REQUEST, 400, {"error": MISSING_HEADERS}
    if not DELIVERY_ID.fullmatch(delivery):
        return Outcome.BAD_REQUEST, 400, {"error": BAD_DELIVERY_ID}
    try:
        payload = _payload(body, req.mimetype)
    except _UnsupportedType as error:
        return Outcome.UNSUPPORTED, 415, {"delivery": delivery, "error": str(error)}
    except PayloadError as error:
        return Outcome.BAD_REQUEST, 400, {"delivery": delivery, "error": str(error)}
    with log_context(delivery_id=delivery):  # the web process's log lines carry the delivery id too
        return _dispatch(queue, metrics, settings, event, delivery, payload)


def _dispatch(
    queue: JobQueue,
    metrics: MetricsStore,
    settings: Settings,
    event: str,
    delivery: str,
    payload: dict[str, Any],
) -> Answer:
    if event == "ping":
        zen = payload.get("zen")
        return (
            Outcome.PING,
            200,
            {"delivery": delivery, "ok": True, "zen": zen if isinstance(zen, str) else None},
        )
    try:
        decision = route(event, payload, delivery, settings.github_app_id)
    except ValidationError as error:
        details = describe(error)
        log.warning("delivery %s (%s): malformed payload: %s", delivery, event, details)
        return Outcome.BAD_REQUEST, 400, {"delivery": delivery, "error": BAD_PAYLOAD.format(details=details)}
    if isinstance(decision, Ignored):
        return Outcome.IGNORED, 200, {"delivery": delivery, "ignored": decision.reason}
    try:
        job_ids = queue.accept_delivery(delivery, decision, also=_COUNT_ACCEPTED)
    except redis.RedisError as error:
        log.error("delivery %s not queued, Redis unreachable: %s", delivery, error)
        if isinstance(error, redis.ConnectionError | redis.TimeoutError):
            metrics.unreachable()  # the count would only wait on the same dead connection
        return Outcome.UNAVAILABLE, 503, {"delivery": delivery, "error": UNAVAILABLE}
    if job_ids is None:
        return (
            Outcome.DUPLICATE,
            200,
            {"delivery": delivery, "duplicate": True, "ignored": "delivery was already received"},
        )
    # Debug only: gunicorn's access line already says 202 with the delivery id (bot/gunicorn_conf.py), and
    # the job ids follow from it; a second line per delivery cost more than the rest of this function.
    log.debug("delivery %s (%s) queued as %s", delivery, event, job_ids)
    return Outcome.ACCEPTED, 202, {"delivery": delivery, "jobs": job_ids}
