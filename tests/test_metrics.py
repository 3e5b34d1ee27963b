"""`/metrics` and `/readyz`: counts kept in a real Redis, read back through Prometheus' own parser, and
readiness decided from real RQ worker registrations (and a real `archon-bot worker` process)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker

from bot.agent.ledger import ProviderStats
from bot.metrics import HASH, MetricsStore, count, count_in, observe_run
from bot.queue import RUNS_QUEUE, TRIAGE_QUEUE
from bot.runconfig import RunConfig
from bot.runs import NodeRun, RunRecord, RunState
from bot.settings import Settings
from bot.web import create_app
from tests.support import REPO, commented, delivery_headers, encode, labeled


@pytest.fixture
def client(settings: Settings, redis_conn: redis.Redis):
    return create_app(settings, redis_conn).test_client()


def post(client, event: str, payload: dict, **kwargs):
    body = encode(payload)
    return client.post("/webhook", data=body, headers=delivery_headers(event, body, **kwargs))


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`/metrics` parsed by prometheus_client's own parser: {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def deliveries(samples, outcome: str) -> float:
    return samples.get(("archon_webhook_deliveries_total", (("outcome", outcome),)), 0.0)


def test_deliveries_are_counted_by_outcome(client, redis_conn) -> None:
    before = scrape(client)
    assert deliveries(before, "accepted") == 0 and before[("archon_redis_up", ())] == 1
    post(client, "issues", labeled("archon:plan-opus"), delivery="m-1")
    post(client, "issues", labeled("archon:plan-opus"), delivery="m-1")
    post(client, "issues", labeled("bug"))
    post(client, "issues", labeled("archon:plan-opus"), secret="wrong")
    broken = labeled("archon:plan-opus")
    broken["issue"]["number"] = "1"
    post(client, "issues", broken)
    after = scrape(client)
    outcomes = ("accepted", "duplicate", "ignored", "unauthorized", "bad_request")
    assert [deliveries(after, outcome) for outcome in outcomes] == [1, 1, 1, 1, 1]


def test_counts_are_shared_by_every_web_process(settings, redis_conn) -> None:
    """gunicorn's workers are separate processes: each app counts into the same Redis hash."""
    first, second = (create_app(settings, redis_conn).test_client() for _ in range(2))
    post(first, "issue_comment", commented("/archon status"))
    post(second, "issue_comment", commented("/archon status"))
    assert deliveries(scrape(first), "accepted") == deliveries(scrape(second), "accepted") == 2


def test_queue_depth_and_workers_are_exported(client, redis_conn) -> None:
    post(client, "issues", labeled("archon:plan-opus"))
    samples = scrape(client)
    assert samples[("archon_queue_jobs", (("queue", TRIAGE_QUEUE), ("state", "queued")))] == 1
    assert samples[("archon_queue_jobs", (("queue", RUNS_QUEUE), ("state", "queued")))] == 0
    assert samples[("archon_workers", (("queue", TRIAGE_QUEUE),))] == 0
    worker = Worker([Queue(TRIAGE_QUEUE, connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    try:
        assert scrape(client)[("archon_workers", (("queue", TRIAGE_QUEUE),))] == 1
    finally:
        worker.register_death()


def record(run_id: str = "r1", state: RunState = RunState.DONE, cost: float = 0.25, retries: int = 2):
    node = NodeRun(
        id="plan",
        kind="agent",
        cost_usd=cost,
        providers={
            "anthropic": ProviderStats(retries=retries, stalls=1, fallbacks=1),
            "openrouter": ProviderStats(retries=1),
        },
    )
    return RunRecord(
        run_id=run_id,
        job_id="j",
        installation_id=1,
        config=RunConfig(repo=REPO, issue=1, workflow="fix-issue", models={}),
        requested_by="maintainer",
        trigger="label",
        state=state,
        nodes={"plan": node},
    )


def test_observe_run_counts_state_spend_and_reliability(client, redis_conn) -> None:
    observe_run(redis_conn, record("r1", RunState.FAILED, cost=0.25, retries=2))
    # The same run, retried: it now costs more and retried once more. Only the increase is added.
    observe_run(redis_conn, record("r1", RunState.DONE, cost=0.40, retries=3))
    observe_run(redis_conn, record("r2", RunState.DONE, cost=0.10, retries=0))
    samples = scrape(client)
    assert samples[("archon_runs_finished_total", (("state", "done"),))] == 2
    assert samples[("archon_runs_finished_total", (("state", "failed"),))] == 1
    assert samples[("archon_spent_usd_total", ())] == pytest.approx(0.50)
    assert samples[("archon_model_retries_total", (("provider", "anthropic"),))] == 3
    assert samples[("archon_model_retries_total", (("provider", "openrouter"),))] == 2
    assert samples[("archon_model_stalls_total", (("provider", "anthropic"),))] == 2
    assert samples[("archon_model_fallbacks_total", (("provider", "anthropic"),))] == 2


def test_observe_run_and_count_never_raise(redis_conn, caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    caplog.set_level(logging.WARNING, logger="bot.metrics")
    observe_run(dead, record())
    count(dead, "github_write_retries", status="502")
    observe_run(redis_conn, None)  # type: ignore[arg-type]
    count(redis_conn, "not a name!")
    assert "run ? not counted" in caplog.text and "names must match" in caplog.text
    assert redis_conn.hlen(HASH) == 0


def test_other_counters_are_exported(client, redis_conn) -> None:
    count(redis_conn, "github_write_retries", status="502")
    count(redis_conn, "github_write_retries", status="502")
    MetricsStore(redis_conn).count("github_write_retries", status="secondary_rate_limit")
    samples = scrape(client)
    assert samples[("archon_github_write_retries_total", (("status", "502"),))] == 2
    assert samples[("archon_github_write_retries_total", (("status", "secondary_rate_limit"),))] == 1


def test_a_count_can_ride_in_a_transaction(client, redis_conn) -> None:
    with redis_conn.pipeline() as pipe:
        pipe.multi()
        pipe.set("archon:delivery:x", "1")
        count_in(pipe, "webhook_deliveries", outcome="accepted")
        pipe.execute()
    assert deliveries(scrape(client), "accepted") == 1


def test_metrics_without_redis_says_so(settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    samples = scrape(create_app(settings, dead).test_client())
    assert samples == {("archon_redis_up", ()): 0}


# --- /readyz ------------------------------------------------------------------------------------------


def register(redis_conn: redis.Redis, queue: str) -> Worker:
    worker = Worker([Queue(queue, connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    return worker


def test_readyz_needs_a_live_worker_on_each_queue(client, redis_conn) -> None:
    triage = register(redis_conn, TRIAGE_QUEUE)
    response = client.get("/readyz")
    assert response.status_code == 503 and "no live worker on archon-runs" in response.json["reason"]
    runs = register(redis_conn, RUNS_QUEUE)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["workers"] == {TRIAGE_QUEUE: 1, RUNS_QUEUE: 1}
    runs.register_death()
    assert client.get("/readyz").status_code == 503
    triage.register_death()
    assert client.get("/healthz").status_code == 200  # liveness is not readiness


def test_readyz_ignores_a_worker_whose_heartbeat_is_stale(client, redis_conn) -> None:
    """A worker that died without deregistering (SIGKILL) is not counted once its heartbeat is old."""
    from datetime import timedelta

    from rq.utils import now, utcformat

    for queue in (TRIAGE_QUEUE, RUNS_QUEUE):
        register(redis_conn, queue)
    assert client.get("/readyz").status_code == 200
    [stale, *_] = Worker.all(queue=Queue(RUNS_QUEUE, connection=redis_conn))
    redis_conn.hset(stale.key, "last_heartbeat", utcformat(now() - timedelta(hours=1)))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["workers"][RUNS_QUEUE] == 0


@pytest.fixture
def web(settings: Settings, redis_conn):
    """The web app under a real WSGI server thread, so the test can poll it while a worker starts."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(settings, redis_conn), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def wait_for_readyz(url: str, code: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    answer: dict = {}
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{url}/readyz", timeout=10)
            answer = response.json()
            if response.status_code == code:
                return answer
        except (requests.RequestException, ValueError):
            pass  # a loaded machine: any transient error is retried until the deadline
        assert process.poll() is None or code == 503, log.read_text()
        time.sleep(0.5)
    raise AssertionError(f"/readyz never answered {code}: {answer}\n{log.read_text()}")


def test_readyz_follows_a_real_archon_bot_worker(web, worker_env, tmp_path: Path) -> None:
    assert requests.get(f"{web}/readyz", timeout=10).status_code == 503
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        answer = wait_for_readyz(web, 200, process, log)
        assert answer["workers"] == {TRIAGE_QUEUE: 1, RUNS_QUEUE: 1}
        process.send_signal(signal.SIGTERM)  # a warm shutdown deregisters the workers
        process.wait(timeout=120)
        assert "no live worker" in wait_for_readyz(web, 503, process, log)["reason"]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
