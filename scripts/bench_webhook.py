"""Webhook latency: how long the handler takes to verify, parse, deduplicate and enqueue a delivery.

Runs the real web process (gunicorn) on LocalStack and times N signed `issues.labeled` deliveries
against N `GET /healthz` calls (one Redis PING: the floor of any request that touches Redis) measured
in the same run. Figures are reported as ratios to that baseline; record them in docs/performance.md.

    .venv/bin/python scripts/bench_webhook.py --n 300
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import requests

from bot.fakes.stack import LocalStack


def _labeled(i: int) -> dict:
    return {
        "action": "labeled",
        "label": {"name": "archon:plan-opus impl-kimi"},
        "issue": {"number": i, "labels": [{"name": "archon:plan-opus impl-kimi"}]},
        "repository": {"full_name": "octo-org/bench"},
        "installation": {"id": 1},
        "sender": {"login": "alice", "type": "User"},
    }


def _time(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    n = parser.parse_args().n
    # No worker contention: the workers are not given the repository, so triage jobs fail fast
    # in the background; only the web handler's latency is measured here.
    with LocalStack() as stack, requests.Session() as session:
        health = f"{stack.base_url}/healthz"
        for _ in range(20):  # warm up connections and imports
            session.get(health, timeout=5)
        base = [_time(lambda: session.get(health, timeout=5)) for _ in range(n)]
        hooks = []
        for i in range(n):
            hooks.append(_time(lambda i=i: _check(stack.deliver("issues", _labeled(i), str(uuid.uuid4())))))
    for name, sample in (("GET /healthz (baseline)", base), ("POST /webhook labeled → 202", hooks)):
        q = statistics.quantiles(sample, n=20)
        print(f"{name:30} p50 {statistics.median(sample):6.2f} ms   p95 {q[18]:6.2f} ms")
    ratio = statistics.median(hooks) / statistics.median(base)
    print(f"webhook / baseline (p50): {ratio:.2f}x over {n} requests each")


def _check(answer: requests.Response) -> None:
    if answer.status_code != 202:
        raise SystemExit(f"unexpected answer {answer.status_code}: {answer.text}")


if __name__ == "__main__":
    main()
