"""Front door: the webhook against a bare Flask route, both under the Procfile's gunicorn configuration.

Starts a private `redis-server` and three gunicorn servers launched exactly as the Procfile's `web` line
(`gunicorn -c python:bot.gunicorn_conf …`, so the same worker class, worker count, access log and log
format): one serving `bot.web:create_app()`, one `bare_app()` below (a route that reads the body and answers
a small JSON document — what any Flask webhook costs before it does anything), and one `floor_app()` (the
bare route plus one Redis SET NX through redis-py: what any webhook that durably deduplicates costs). All
stay up; a closed-loop load generator (urllib3, one kept-alive connection pool, N threads) drives each in
turn at concurrency 1, 8 and 32, each side first in turn round by round, and the figures are the medians
of the per-round ratios (other work loads this 2-core machine too: single rounds are noisy).

Also: deliveries lost (202s against the jobs in Redis), a redelivery storm (one delivery id sent many
times at once → exactly one job) and Redis stopped → 503.

    .venv/bin/python scripts/bench_front_door.py [--quick] [--worker-class gthread --threads 4 --workers 2]
    .venv/bin/python scripts/bench_front_door.py --stages   # in-process CPU µs per stage, no HTTP

`--stages` runs both apps in this process on a WSGI environ (no server, no client), a real private Redis
behind the webhook, and times each stage of the handler in CPU time (`time.thread_time_ns`, so other
helpers' load does not count as ours) inside real requests: the functions bot.web calls are wrapped.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
import urllib3
from flask import Flask, jsonify, request

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from benchkit import Figure, median, p99  # noqa: E402

from bot.queue import TRIAGE_QUEUE  # noqa: E402
from bot.redis_server import RedisServer, free_port  # noqa: E402

NAME = "front-door"
SECRET = "bench-front-door-secret"
CONCURRENCY = (1, 8, 32)
LABEL = "archon:plan-opus impl-kimi"


def bare_app() -> Flask:
    """The baseline: a Flask route that reads the body and answers JSON, nothing else."""
    app = Flask("bare")

    @app.post("/webhook")
    def webhook():  # type: ignore[no-untyped-def]
        request.get_data(cache=False)
        return jsonify(delivery=request.headers.get("X-GitHub-Delivery"), ok=True), 202

    return app


def floor_app() -> Flask:
    """The floor of any durable webhook: the bare route plus one Redis write through redis-py (SET NX with
    a TTL of the delivery id, what deduplication alone needs), to the same Redis as the webhook's. What
    the webhook costs above this is verification, parsing, validation, routing and the job itself."""
    from bot.queue import connect

    app = Flask("floor")
    connection = connect(os.environ["REDIS_URL"])

    @app.post("/webhook")
    def webhook():  # type: ignore[no-untyped-def]
        request.get_data(cache=False)
        delivery = request.headers.get("X-GitHub-Delivery")
        connection.set(f"bench:floor:{delivery}", 1, nx=True, ex=600)
        return jsonify(delivery=delivery, ok=True), 202

    return app


def _payload(number: int) -> bytes:
    """An `issues.labeled` delivery shaped like GitHub's (the test data's example, when present)."""
    example = ROOT / "tests" / "data" / "github" / "webhooks" / "issues.labeled.json"
    payload = json.loads(example.read_text()) if example.exists() else _minimal()
    payload["label"] = {"name": LABEL}
    payload["issue"]["number"] = number
    payload["issue"]["labels"] = [{"name": LABEL}]
    payload["installation"] = {"id": 1}
    payload["sender"] = {"login": "alice", "type": "User"}
    return json.dumps(payload).encode()


def _minimal() -> dict:
    return {
        "action": "labeled",
        "issue": {"number": 1},
        "repository": {"full_name": "octo-org/bench"},
        "sender": {"login": "alice", "type": "User"},
    }


def _headers(body: bytes, delivery: str) -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
    }


@dataclass
class Server:
    """One gunicorn process tree serving `target` on a free port with the Procfile's config."""

    target: str
    redis_url: str
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> Server:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "scripts")]),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "REDIS_URL": self.redis_url,
            "PORT": str(self.port),
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "python:bot.gunicorn_conf"]
        command += ["--bind", f"127.0.0.1:{self.port}", *self.extra, self.target]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
        self._wait()
        return self

    def _wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pool = urllib3.PoolManager(retries=False, timeout=5)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn serving {self.target} exited at start")
            try:
                pool.request("POST", f"{self.url}/webhook", body=b"{}")
                return
            except urllib3.exceptions.HTTPError:  # not listening yet, or slow on a loaded machine
                time.sleep(0.2)
        raise TimeoutError(f"gunicorn serving {self.target} did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Load:
    """What one closed-loop burst measured."""

    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


def drive(url: str, concurrency: int, requests: int, bodies: Iterator[tuple[bytes, dict[str, str]]]) -> Load:
    """`requests` POSTs from `concurrency` threads sharing one kept-alive pool; each thread sends its
    next request as soon as its last one is answered."""
    pool = urllib3.HTTPConnectionPool(
        "127.0.0.1", int(url.rsplit(":", 1)[1]), maxsize=concurrency, block=True
    )
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = [requests]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
                body, headers = next(bodies)
            started = time.perf_counter()
            answer = pool.urlopen("POST", "/webhook", body=body, headers=headers, retries=False)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        for future in [executor.submit(worker) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - started
    pool.close()
    return Load(seconds, latencies, statuses)


def _deliveries(body: bytes, sent: list[str]) -> Iterator[tuple[bytes, dict[str, str]]]:
    while True:
        delivery = uuid.uuid4().hex
        sent.append(delivery)
        yield body, _headers(body, delivery)


def storm(url: str, connection: redis.Redis, copies: int = 64) -> tuple[int, int]:
    """One delivery id sent `copies` times at once: (202 answers, jobs in Redis for that id)."""
    body = _payload(999_999)
    delivery = f"storm-{uuid.uuid4().hex}"
    load = drive(url, 32, copies, iter(lambda: (body, _headers(body, delivery)), None))
    jobs = sum(1 for _ in connection.scan_iter(f"rq:job:triage-{delivery}-*"))
    return load.statuses.get(202, 0), jobs


@contextmanager
def servers(redis_url: str, extra: list[str], log: Path) -> Iterator[dict[str, Server]]:
    sides = {
        "webhook": Server("bot.web:create_app()", redis_url, extra),
        "bare": Server("bench_front_door:bare_app()", redis_url, extra),
        "floor": Server("bench_front_door:floor_app()", redis_url, extra),
    }
    try:
        for side in sides.values():
            side.start(log)
        yield sides
    finally:
        for side in sides.values():
            side.stop()


def measure(quick: bool, extra: list[str]) -> list[Figure]:
    rounds, per_round = (3, 300) if quick else (7, 1500)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_front_door.{os.getpid()}.log"
    redis_server = RedisServer().start()
    connection = redis.Redis.from_url(redis_server.url)
    body = _payload(1)
    sent: list[str] = []
    accepted = 0
    ratios: dict[int, dict[str, list[float]]] = {
        c: {"throughput": [], "p99": [], "floor": [], "over floor": []} for c in CONCURRENCY
    }
    raw: dict[int, dict[str, list[float]]] = {c: {} for c in CONCURRENCY}
    try:
        with servers(redis_server.url, extra, log) as sides:
            feeds = {
                "webhook": _deliveries(body, sent),
                "bare": _deliveries(body, []),
                "floor": _deliveries(body, []),
            }
            for name, side in sides.items():  # warm-up: imports, connections, the Lua script
                drive(side.url, 8, 200, feeds[name])
            accepted_before = connection.llen(f"rq:queue:{TRIAGE_QUEUE}")
            sent.clear()
            for index in range(rounds):
                for concurrency in CONCURRENCY:
                    names = list(sides)
                    order = names[index % 3 :] + names[: index % 3]  # each side first in turn
                    loads = {
                        name: drive(sides[name].url, concurrency, per_round, feeds[name]) for name in order
                    }
                    _check(loads)
                    accepted += loads["webhook"].statuses.get(202, 0)
                    web, bare = loads["webhook"], loads["bare"]
                    ratios[concurrency]["throughput"].append(web.throughput / bare.throughput)
                    ratios[concurrency]["p99"].append(p99(web.latencies) / p99(bare.latencies))
                    floor = loads["floor"]
                    ratios[concurrency]["floor"].append(floor.throughput / bare.throughput)
                    ratios[concurrency]["over floor"].append(web.throughput / floor.throughput)
                    for key, value in (
                        ("web_rps", web.throughput),
                        ("bare_rps", bare.throughput),
                        ("floor_rps", floor.throughput),
                        ("web_p99", p99(web.latencies) * 1000),
                        ("bare_p99", p99(bare.latencies) * 1000),
                    ):
                        raw[concurrency].setdefault(key, []).append(value)
            queued = connection.llen(f"rq:queue:{TRIAGE_QUEUE}") - accepted_before
            with connection.pipeline(transaction=False) as pipe:
                for delivery in sent:
                    pipe.exists(f"rq:job:triage-{delivery}-0")
                present = sum(pipe.execute())
            storm_accepted, storm_jobs = storm(sides["webhook"].url, connection)
            redis_server.stop()
            down = drive(sides["webhook"].url, 1, 5, _deliveries(body, []))
    finally:
        redis_server.stop()
    label = " ".join(extra) or "Procfile config"
    figures: list[Figure] = []
    for concurrency in CONCURRENCY:
        r, m = ratios[concurrency], {k: statistics.median(v) for k, v in raw[concurrency].items()}
        figures.append(
            Figure(
                NAME,
                f"throughput ÷ bare route, c={concurrency}",
                statistics.median(r["throughput"]),
                target=0.8,
                better="higher",
                detail=f"{m['web_rps']:.0f} vs {m['bare_rps']:.0f} req/s; median of {rounds} rounds; {label}",
            )
        )
        figures.append(
            Figure(
                NAME,
                f"floor (bare route + one Redis SET NX) ÷ bare route, c={concurrency}",
                statistics.median(r["floor"]),
                detail=f"{m['floor_rps']:.0f} req/s; webhook ÷ floor {median(r['over floor']):.2f}×",
            )
        )
        figures.append(
            Figure(
                NAME,
                f"p99 ÷ bare route, c={concurrency}",
                statistics.median(r["p99"]),
                target=1.3,
                detail=f"{m['web_p99']:.1f} vs {m['bare_p99']:.1f} ms",
            )
        )
    lost = accepted - min(queued, present)
    figures.append(
        Figure(
            NAME,
            "deliveries lost",
            lost,
            unit="",
            target=0,
            detail=f"{accepted} answered 202, {present} jobs",
        )
    )
    figures.append(
        Figure(
            NAME,
            "jobs beyond one from a 64-copy redelivery storm",
            abs(storm_jobs - 1),
            unit="",
            target=0,
            detail=f"{storm_jobs} job(s), {storm_accepted} answered 202",
        )
    )
    figures.append(
        Figure(
            NAME,
            "503s with Redis stopped (of 5)",
            down.statuses.get(503, 0),
            unit="",
            target=5,
            better="higher",
            detail=str(down.statuses),
        )
    )
    return figures


def _check(loads: dict[str, Load]) -> None:
    expected = {"webhook": 202, "bare": 202, "floor": 202}
    for name, load in loads.items():
        if set(load.statuses) != {expected[name]}:
            raise RuntimeError(f"{name} answered {load.statuses}; see the gunicorn log")


#: The functions of bot.web timed by `stages`, by the name the report gives them.
STAGES = {
    "HMAC": ("bot.web", "signature_ok"),
    "parse (JSON + depth)": ("bot.web", "_payload"),
    "validate + route": ("bot.web", "route"),
    "accept (job values + one EVALSHA)": ("bot.queue", "JobQueue.accept_delivery"),
    "jsonify": ("bot.web", "jsonify"),
}


def stages(requests: int = 3000, rounds: int = 5) -> dict[str, float]:
    """CPU µs per request of each stage, of the whole webhook and of the bare route, in this process."""
    import importlib
    import io
    from collections import Counter

    from werkzeug.test import EnvironBuilder

    from bot.settings import Settings
    from bot.web import create_app

    spent: Counter[str] = Counter()

    def timed(label: str, function):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.thread_time_ns() - started

        return call

    for label, (module, name) in STAGES.items():
        owner = importlib.import_module(module)
        *path, attribute = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, attribute, timed(label, getattr(owner, attribute)))
    redis_server = RedisServer().start()
    try:
        settings = Settings(_env_file=None, github_webhook_secret=SECRET, redis_url=redis_server.url)
        apps = {"webhook": create_app(settings, redis.Redis.from_url(redis_server.url)), "bare": bare_app()}
        body = _payload(1)

        def run(app: Flask, count: int) -> float:
            environs = [
                EnvironBuilder(
                    path="/webhook", method="POST", data=body, headers=_headers(body, uuid.uuid4().hex)
                ).get_environ()
                for _ in range(count)
            ]
            started = time.thread_time_ns()
            for environ in environs:
                environ["wsgi.input"] = io.BytesIO(body)
                statuses: list[str] = []
                answer = app(environ, lambda status, _h, _e=None, seen=statuses: seen.append(status))
                b"".join(answer)
                answer.close()
                if not statuses[0].startswith("202"):
                    raise RuntimeError(f"answered {statuses[0]}")
            return (time.thread_time_ns() - started) / count / 1000

        for app in apps.values():
            run(app, 300)  # warm-up: imports, the template, the script
        spent.clear()
        totals: dict[str, list[float]] = {"webhook": [], "bare": []}
        for _ in range(rounds):
            for name, app in apps.items():
                totals[name].append(run(app, requests))
    finally:
        redis_server.stop()
    result = {label: spent[label] / (requests * rounds) / 1000 for label in STAGES}
    result["webhook total"] = statistics.median(totals["webhook"])
    result["bare route total"] = statistics.median(totals["bare"])
    return result


def figures(quick: bool = False) -> list[Figure]:
    return measure(quick, [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker-class")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--stages", action="store_true", help="in-process CPU µs per stage, then exit")
    args = parser.parse_args()
    if args.stages:
        for label, micros in stages().items():
            print(f"{label:36s} {micros:7.1f} µs")
        return
    extra = [
        part
        for flag, value in (
            ("--worker-class", args.worker_class),
            ("--threads", args.threads),
            ("--workers", args.workers),
        )
        if value is not None
        for part in (flag, str(value))
    ]
    from bench import table
    from rich.console import Console

    Console(width=160).print(table(measure(args.quick, extra)))


if __name__ == "__main__":
    main()
