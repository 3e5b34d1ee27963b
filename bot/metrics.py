"""Counts the operator watches, kept in Redis and exposed to Prometheus at `/metrics`.

gunicorn runs several web processes and RQ runs every job in a fresh work-horse, so counters in process
memory would be wrong. Every count is a field of one Redis hash (HINCRBY / HINCRBYFLOAT, one round trip);
the collector reads that hash plus RQ's queues, registries and worker registrations when Prometheus
scrapes. Counting never fails the caller: a count that cannot be stored is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from rq import Queue, Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.utils import now

from bot.queue import RUNS_QUEUE, TRIAGE_QUEUE

if TYPE_CHECKING:
    from bot.runs import RunRecord

log = logging.getLogger(__name__)

HASH = "archon:metrics"
PREFIX = "archon_"
QUEUES = (TRIAGE_QUEUE, RUNS_QUEUE)
RUN_SNAPSHOT_TTL = 90 * 24 * 3600  # what a run already contributed, so a retried run is not counted twice
QUIET_S = 10.0  # after Redis was unreachable, skip counts this long: a delivery must not wait on them
#: A worker heartbeats at least every `worker_ttl`; RQ expires its registration 60 s after that.
WORKER_FRESH = timedelta(seconds=DEFAULT_WORKER_TTL + 60)
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Outcome(StrEnum):
    """How the webhook answered a delivery (`archon_webhook_deliveries_total{outcome=…}`)."""

    ACCEPTED = "accepted"  # 202, queued
    DUPLICATE = "duplicate"  # 200, a redelivery of one already queued
    IGNORED = "ignored"  # 200, nothing the bot acts on
    PING = "ping"  # 200
    UNAUTHORIZED = "unauthorized"  # 401, signature missing or wrong
    BAD_REQUEST = "bad_request"  # 400, headers, JSON or payload shape
    UNSUPPORTED = "unsupported_media_type"  # 415
    TOO_LARGE = "too_large"  # 413
    UNAVAILABLE = "unavailable"  # 503, Redis refused the enqueue


#: Help text of the counters others write; a name not listed here is exported with a generic help.
HELP = {
    "webhook_deliveries": "Webhook deliveries, by how they were answered.",
    "runs_finished": "Runs that reached a final state, by that state.",
    "spent_usd": "USD spent on model calls by runs that reached a final state.",
    "model_retries": "Model call retries (rate limits, 5xx, timeouts), by provider.",
    "model_stalls": "Model streams that stalled and were abandoned, by provider.",
    "model_fallbacks": "Times a provider was abandoned for the next in its fallback chain, by provider.",
}


def _field(name: str, labels: dict[str, str]) -> str:
    return json.dumps([name, dict(sorted(labels.items()))], separators=(",", ":"))


class MetricsStore:
    """Writes counts to the metrics hash. One per process (the web app keeps one)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._quiet_until = 0.0

    def unreachable(self) -> None:
        """Redis was just found unreachable: skip counts for a while rather than wait on each."""
        self._quiet_until = time.monotonic() + QUIET_S

    def count(self, name: str, /, *, by: float = 1, **labels: str) -> None:
        """Add `by` to counter `name` with these labels. Never raises."""
        if not _NAME.match(name) or not all(_NAME.match(label) for label in labels):
            log.error(
                "metric %r with labels %s not counted: names must match %s", name, labels, _NAME.pattern
            )
            return
        self.add({_field(name, {k: str(v) for k, v in labels.items()}): by})

    def add(self, increments: dict[str, float], snapshot: tuple[str, str] | None = None) -> None:
        """Apply several increments (and optionally set a snapshot key) in one round trip."""
        if time.monotonic() < self._quiet_until:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for field, amount in increments.items():
                    if isinstance(amount, int):
                        pipe.hincrby(HASH, field, amount)
                    else:
                        pipe.hincrbyfloat(HASH, field, amount)
                if snapshot is not None:
                    pipe.set(snapshot[0], snapshot[1], ex=RUN_SNAPSHOT_TTL)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.unreachable()
            log.warning("metrics not counted, Redis unreachable: %s", error)
        except redis.RedisError as error:
            log.warning("metrics not counted: %s", error)


def count_in(pipe: redis.client.Pipeline, name: str, /, **labels: str) -> None:
    """Queue one increment on a pipeline the caller executes (so a count can ride in its transaction)."""
    pipe.execute_command(*increment(name, **labels))


def increment(name: str, /, **labels: str) -> tuple[str, str, str, int]:
    """The command adding one to a counter, for a script or transaction that runs it with its own
    writes (`JobQueue.accept_delivery(also=…)`): built once, it costs nothing per delivery."""
    return ("HINCRBY", HASH, _field(name, {k: str(v) for k, v in labels.items()}), 1)


def count(connection: redis.Redis, name: str, /, *, by: float = 1, **labels: str) -> None:
    """Add to a counter (e.g. `count(conn, "github_write_retries", status="502")`). Never raises."""
    MetricsStore(connection).count(name, by=by, **labels)


def _run_totals(record: RunRecord) -> dict[str, float]:
    """What a run has spent and gone through so far, as metric fields."""
    totals: dict[str, float] = defaultdict(float)
    totals[_field("spent_usd", {})] = float(record.cost_usd)
    for node in record.nodes.values():
        for provider, stats in node.providers.items():
            for name, value in (
                ("model_retries", stats.retries),
                ("model_stalls", stats.stalls),
                ("model_fallbacks", stats.fallbacks),
            ):
                totals[_field(name, {"provider": provider})] += value
    return totals


def observe_run(connection: redis.Redis, record: RunRecord) -> None:
    """Count a run that reached a final state: its state, and what it spent and went through.

    Spend, retries, stalls and fallbacks are counted as the increase since this run was last observed,
    so a run retried after a failure adds only what the retry cost. Never raises.
    """
    try:
        snapshot_key = f"archon:metrics:run:{record.run_id}"
        totals = _run_totals(record)
        before = json.loads(connection.get(snapshot_key) or "{}")
        increments: dict[str, float] = {_field("runs_finished", {"state": str(record.state)}): 1}
        for field, total in totals.items():
            delta = total - float(before.get(field, 0))
            if delta > 0:
                increments[field] = int(delta) if field != _field("spent_usd", {}) else round(delta, 8)
        MetricsStore(connection).add(increments, snapshot=(snapshot_key, json.dumps(totals)))
    except Exception:  # a metric must never fail the run it describes
        log.exception("run %s not counted in metrics", getattr(record, "run_id", "?"))


def live_workers(connection: redis.Redis, queue_name: str) -> int:
    """Workers registered on a queue whose registration is alive and whose heartbeat is fresh."""
    queue = Queue(queue_name, connection=connection)
    cutoff = now() - WORKER_FRESH
    return sum(
        1
        for worker in Worker.all(queue=queue)
        if worker.last_heartbeat is not None and worker.last_heartbeat > cutoff
    )


class Collector:
    """A prometheus_client collector that reads Redis at scrape time (register on a CollectorRegistry)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def describe(self) -> list[Metric]:
        return []  # without this, registering would call `collect` (and Redis) at once

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(PREFIX + "redis_up", "1 when Redis answered this scrape.")
        try:
            families = [*self._counters(), *self._queues()]
        except redis.RedisError as error:
            log.warning("metrics scrape: Redis unreachable: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _counters(self) -> Iterable[Metric]:
        # Zeros first, so every outcome exists from the first scrape (rate() needs a starting point).
        values: dict[str, float] = {_field("webhook_deliveries", {"outcome": o.value}): 0 for o in Outcome}
        values[_field("spent_usd", {})] = 0
        for raw_field, raw_value in self.redis.hgetall(HASH).items():
            field = raw_field.decode(errors="replace") if isinstance(raw_field, bytes) else raw_field
            values[field] = float(raw_value)
        samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for field, value in values.items():
            try:
                name, labels = json.loads(field)
                samples[name].append((labels, value))
            except (ValueError, TypeError):
                log.warning("metrics: unreadable field %r in %s", field, HASH)
        for name in sorted(samples):
            yield _counter(name, samples[name])

    def _queues(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            PREFIX + "queue_jobs", "Jobs per RQ queue and state.", labels=["queue", "state"]
        )
        workers = GaugeMetricFamily(
            PREFIX + "workers", "Live RQ workers (fresh heartbeat) listening on each queue.", labels=["queue"]
        )
        for name in QUEUES:
            queue = Queue(name, connection=self.redis)
            jobs.add_metric([name, "queued"], queue.count)
            for state, registry in (
                ("started", queue.started_job_registry),
                ("deferred", queue.deferred_job_registry),
                ("scheduled", queue.scheduled_job_registry),
                ("failed", queue.failed_job_registry),
            ):
                jobs.add_metric([name, state], registry.get_job_count(cleanup=False))
            workers.add_metric([name], live_workers(self.redis, name))
        return [jobs, workers]


def _counter(name: str, samples: list[tuple[dict[str, str], float]]) -> CounterMetricFamily:
    label_names = sorted({key for labels, _ in samples for key in labels})
    family = CounterMetricFamily(
        PREFIX + name, HELP.get(name, f"Archon Bot counter `{name}`."), labels=label_names
    )
    for labels, value in samples:
        family.add_metric([str(labels.get(key, "")) for key in label_names], value)
    return family
