"""Concurrency (issue 13, item 6): 8 runs on 2 run workers against the ideal (8 × one run ÷ 2), why it is
missed, and memory: RSS of each idle worker process, and the peak RSS (VmHWM, from /proc) of each work-horse.

The whole product on loopback (`bot.fakes.stack.LocalStack`, run_workers=2, scripted models): deliveries
go to gunicorn, runs to `archon-bot worker`'s two RQ run workers, each run in its own work-horse. One run
alone and a batch of 8 alternate; figures are medians. Other work loads the same 2 CPUs: noisy.

Beside the ratio, the figures that say why (`bench_concurrency_timeline.py` reads them back from what
the bot records: RQ's job hashes and the run records' node times): how busy the two run workers were,
how much slower a run job is in the batch than alone, and the CPU the whole stack (this process and every
descendant, exited ones included) burned against what the cores can give — with the whole machine's
share beside it, since other work competes for the same cores.

    .venv/bin/python scripts/bench_concurrency.py [--quick] [--timeline]

`--timeline` prints each round's per-run table on stderr (accepted, triage, enqueued, started, ended,
queue wait, run, setup before the first node, finish after the last, worker/horse, node durations).
`bench_concurrency_causes.py` runs the same batches under variants that each remove one suspected cost.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from rq import Worker
from rq.worker import WorkerStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_concurrency_timeline import (
    CpuMeter,
    CpuWindow,
    HorseSampler,
    RunTimeline,
    busy_share,
    collect,
    horses,
    render,
    stack_labels,
)
from benchkit import Figure, median

from bot.fakes.stack import LocalStack
from tests.support import INSTALLATION_ID, OPENAPI, REPO, labeled

NAME = "concurrency"
LABEL = "archon:plan-opus impl-kimi"
RUN_TIMEOUT_S = 600.0
RUN_WORKERS = 2


@dataclass
class Batch:
    """One timed batch: its wall time, each run's timeline and the CPU the stack spent on it."""

    wall: float
    timelines: list[RunTimeline]
    cpu: CpuWindow
    deliveries: dict[int, tuple[str, float, float | None]] = field(default_factory=dict)


def _deliver_runs(stack: LocalStack, issues: list[int]) -> dict[int, tuple[str, float, float | None]]:
    """Each issue → (delivery id, epoch seconds its 202 came back, Done seen: filled in later)."""
    accepted: dict[int, tuple[str, float, float | None]] = {}
    for number in issues:
        payload = labeled(LABEL)
        payload["issue"]["number"] = number
        delivery = secrets.token_hex(16)
        answer = stack.deliver("issues", payload, delivery=delivery)
        if answer.status_code != 202:
            raise RuntimeError(f"delivery for #{number} answered {answer.status_code}: {answer.text}")
        accepted[number] = (delivery, time.time(), None)
    return accepted


def _done(stack: LocalStack, number: int) -> bool:
    for comment in stack.github.comments(REPO, number):
        if "archon-bot:status:" in comment["body"]:
            if "Failed" in comment["body"]:
                raise RuntimeError(
                    f"run on #{number} failed: {comment['body'][:400]}\n{stack.logs()[-4000:]}"
                )
            return "Done" in comment["body"]
    return False


class Bench:
    """The stack, its Redis, the horse sampler and the CPU labels, for timed batches."""

    def __init__(self, stack: LocalStack, sampler: HorseSampler | None) -> None:
        self.stack, self.sampler = stack, sampler
        self.connection = redis.Redis.from_url(stack.redis.url)
        redis_pid = stack.redis.process.pid if stack.redis.process else None
        self.root = psutil.Process()
        self.known = stack_labels(self.root, redis_pid)
        self.issues = iter(range(1, 10_000))

    def batch(self, size: int) -> Batch:
        """Seconds from the first delivery until every issue's status comment says Done, with the runs'
        timelines read back from Redis afterwards (reading them is outside the timed part)."""
        issues = [next(self.issues) for _ in range(size)]
        for number in issues:
            self.stack.github.add_issue(REPO, number, title=f"Bug {number}", body="Fix the failing test.")
        with CpuMeter(self.root, self.known) as meter:
            zero, started = time.time(), time.perf_counter()
            deliveries = _deliver_runs(self.stack, issues)
            self._wait(deliveries)
            wall = time.perf_counter() - started
            self._settle()
        timelines = collect(self.connection, REPO, deliveries, zero, self.sampler)
        assert meter.window is not None
        return Batch(wall, timelines, meter.window, deliveries)

    def _settle(self, timeout: float = 60.0) -> None:
        """Until every worker is idle with its horse reaped: a horse's CPU counts in its worker's
        `children_*` only once reaped, and one reaped while the meter reads the tree would be lost."""
        deadline = time.monotonic() + timeout
        while True:
            workers = Worker.all(connection=self.connection)
            busy = [w.name for w in workers if w.get_state() == WorkerStatus.BUSY]
            alive = [h for w in workers if w.pid for h in horses(w.pid)]
            if not busy and not alive:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {busy} / horses {alive} still busy {timeout:g}s after Done")
            time.sleep(0.05)

    def _wait(self, deliveries: dict[int, tuple[str, float, float | None]]) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        pending = set(deliveries)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs {sorted(pending)} not done after {RUN_TIMEOUT_S:g}s")
            for number in [n for n in pending if _done(self.stack, n)]:
                delivery, accepted, _ = deliveries[number]
                deliveries[number] = (delivery, accepted, time.time())
                pending.discard(number)
            time.sleep(0.05)


def _idle_workers(stack: LocalStack) -> list[psutil.Process]:
    """The RQ worker processes under `archon-bot worker` (triage + run workers): its direct children."""
    assert stack.supervisor is not None
    [unit] = [child for name, child in stack.supervisor.children if name == "worker"]
    return psutil.Process(unit.pid).children()


@dataclass
class Measured:
    """Everything one stack's rounds produced."""

    singles: list[Batch]
    batches: list[Batch]
    horse_peaks: dict[int, int]
    resident: dict[int, int]
    supervisor_rss: int
    idle_mb: list[float]


def _show(title: str, batch: Batch, alone: RunTimeline | None) -> None:
    print(f"-- {title}", file=sys.stderr)
    print(render(batch.timelines, batch.wall, alone, batch.cpu), file=sys.stderr)


def measure(
    rounds: int, verbose: bool = False, env: dict[str, str] | None = None, openapi: Path | None = OPENAPI
) -> Measured:
    """One run alone and a batch of 8, alternating `rounds` times after a warm-up run. `env` and
    `openapi` are for experiments (`bench_concurrency_causes.py`); the figures use the defaults."""
    singles: list[Batch] = []
    batches: list[Batch] = []
    # the default cap (5 runs per installation) would refuse part of a batch of 8
    extra = {"ARCHON_MAX_CONCURRENT_RUNS": "16", **(env or {})}
    with LocalStack(openapi=openapi, run_workers=RUN_WORKERS, extra_env=extra) as stack:
        stack.add_sample_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "write"})
        assert stack.supervisor is not None
        [unit] = [child for name, child in stack.supervisor.children if name == "worker"]
        Bench(stack, None).batch(1)  # warm-up: the mirror is made, imports done
        workers = _idle_workers(stack)
        idle = [p.memory_info().rss / 2**20 for p in workers]
        supervisor_rss = psutil.Process(unit.pid).memory_info().rss
        with HorseSampler(workers) as sampler:
            bench = Bench(stack, sampler)
            bench.issues = iter(range(2, 10_000))
            for index in range(rounds):
                singles.append(bench.batch(1))
                batches.append(bench.batch(8))
                if verbose:
                    _show(f"round {index + 1}: one run alone", singles[-1], None)
                    _show(f"round {index + 1}: batch of 8", batches[-1], singles[-1].timelines[0])
    return Measured(singles, batches, sampler.peaks, sampler.resident, supervisor_rss, idle)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _mean_run(batch: Batch) -> float:
    return statistics.mean(t.run for t in batch.timelines if t.run is not None)


def _cpu(batch: Batch) -> float:
    return sum(batch.cpu.stack.values())


def figures(quick: bool = False, verbose: bool = False) -> list[Figure]:
    rounds = 1 if quick else 3
    measured = measure(rounds, verbose)
    singles, batches = measured.singles, measured.batches
    one, eight = median([s.wall for s in singles]), median([b.wall for b in batches])
    ideal = 8 * one / RUN_WORKERS
    pairs = list(zip(singles, batches, strict=True))
    ratios = [b.wall / (8 * s.wall / RUN_WORKERS) for s, b in pairs]
    busy = [busy_share(b.timelines, RUN_WORKERS, b.wall) for b in batches]
    slowdown = [_mean_run(b) / _mean_run(s) for s, b in pairs]
    cores_alone = [_cpu(s) / s.wall for s in singles]
    floor = [(_cpu(b) / b.cpu.cores) / (8 * s.wall / RUN_WORKERS) for s, b in pairs]
    waits = [t.wait for b in batches for t in b.timelines if t.wait is not None]
    peaks = sorted(measured.horse_peaks.values())
    idle = ", ".join(f"{mb:.0f}" for mb in sorted(measured.idle_mb))
    resident = ", ".join(f"{rss / 2**20:.0f}" for rss in measured.resident.values()) or "none"
    alone_cpu = median([_cpu(s) for s in singles])
    by_part = {k: median([b.cpu.stack.get(k, 0.0) for b in batches]) for k in batches[0].cpu.stack}
    return [
        Figure(
            NAME,
            "8 runs on 2 run workers ÷ ideal (8 × one run ÷ 2)",
            median(ratios),
            detail=(
                f"8 runs {eight:.2f} s, one run {one:.2f} s, ideal {ideal:.2f} s, rounds={rounds}, "
                f"per round {_list(ratios)}"
            ),
        ),
        Figure(
            NAME,
            "run workers busy during the batch (Σ run-job time ÷ 2 × wall)",
            median(busy),
            unit="",
            detail=f"per round {_list(busy)}; median queue wait {median(waits):.2f} s",
        ),
        Figure(
            NAME,
            "run-job time in the batch ÷ run-job time alone (sharing the cores)",
            median(slowdown),
            detail=(
                f"mean run job {median([_mean_run(b) for b in batches]):.2f} s in the batch, "
                f"{median([_mean_run(s) for s in singles]):.2f} s alone; per round {_list(slowdown)}"
            ),
        ),
        Figure(
            NAME,
            "CPU the stack used during the batch ÷ (cores × wall)",
            median([b.cpu.stack_share for b in batches]),
            unit="",
            detail=(
                f"whole machine {median([b.cpu.machine_share for b in batches]):.2f} (other work included); "
                f"{median([_cpu(b) for b in batches]):.1f} CPU s per batch: "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_part.items(), key=lambda kv: -kv[1]))
            ),
        ),
        Figure(
            NAME,
            "cores one run alone keeps busy (its CPU s ÷ its wall)",
            median(cores_alone),
            unit="",
            detail=f"{alone_cpu:.1f} CPU s per run alone; per round {_list(cores_alone)}",
        ),
        Figure(
            NAME,
            "CPU floor of the batch (its CPU s ÷ cores) ÷ ideal",
            median(floor),
            detail="≥ 1: the ideal is out of reach on these cores whatever the scheduling",
        ),
        Figure(
            NAME,
            "RSS of an idle worker process (median)",
            median(measured.idle_mb),
            unit=" MB",
            detail=(
                f"{len(measured.idle_mb)} RQ workers: {idle} MB; supervising `archon-bot worker` "
                f"{measured.supervisor_rss / 2**20:.0f} MB; RQ scheduler child {resident} MB"
            ),
        ),
        Figure(
            NAME,
            "peak RSS of a work-horse (median / max)",
            median(peaks) / 2**20 if peaks else 0.0,
            unit=" MB",
            detail=f"max {max(peaks, default=0) / 2**20:.0f} MB over {len(peaks)} horses (VmHWM / 100 ms)",
        ),
    ]


if __name__ == "__main__":
    for figure in figures(quick="--quick" in sys.argv, verbose="--timeline" in sys.argv):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} {figure.detail}")
