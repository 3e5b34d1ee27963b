"""Concurrency (issue 13, item 6): 8 runs on 2 run workers against the ideal (8 × one run ÷ 2), and memory:
RSS of each idle worker process, and the peak RSS (VmHWM, sampled from /proc) of each work-horse.

The whole product on loopback (`bot.fakes.stack.LocalStack`, run_workers=2, scripted models): deliveries
go to gunicorn, runs to `archon-bot worker`'s two RQ run workers, each run in its own work-horse. One run
alone and a batch of 8 alternate; figures are medians. Other work loads the same 2 CPUs: noisy.

    .venv/bin/python scripts/bench_concurrency.py [--quick]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import Figure, median

from bot.fakes.stack import LocalStack
from tests.support import INSTALLATION_ID, OPENAPI, REPO, labeled

NAME = "concurrency"
LABEL = "archon:plan-opus impl-kimi"
RUN_TIMEOUT_S = 600.0


def _deliver_runs(stack: LocalStack, issues: list[int]) -> None:
    for number in issues:
        payload = labeled(LABEL)
        payload["issue"]["number"] = number
        answer = stack.deliver("issues", payload)
        if answer.status_code != 202:
            raise RuntimeError(f"delivery for #{number} answered {answer.status_code}: {answer.text}")


def _done(stack: LocalStack, number: int) -> bool:
    for comment in stack.github.comments(REPO, number):
        if "archon-bot:status:" in comment["body"]:
            if "Failed" in comment["body"]:
                raise RuntimeError(
                    f"run on #{number} failed: {comment['body'][:400]}\n{stack.logs()[-4000:]}"
                )
            return "Done" in comment["body"]
    return False


def _runs(stack: LocalStack, issues: list[int]) -> float:
    """Seconds from the first delivery until every issue's status comment says Done."""
    for number in issues:
        stack.github.add_issue(REPO, number, title=f"Bug {number}", body="Fix the failing test.")
    started = time.perf_counter()
    _deliver_runs(stack, issues)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    pending = set(issues)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs {sorted(pending)} not done after {RUN_TIMEOUT_S:g}s")
        pending = {number for number in pending if not _done(stack, number)}
        time.sleep(0.05)
    return time.perf_counter() - started


class HorseSampler:
    """Peak RSS per work-horse: every 20 ms, VmHWM of each process whose parent is a worker process."""

    def __init__(self, workers: list[psutil.Process]) -> None:
        self.workers = {p.pid for p in workers}
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> HorseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.workers:
                try:
                    horses = psutil.Process(pid).children()
                except psutil.Error:
                    continue
                for horse in horses:
                    peak = _hwm(horse.pid)
                    if peak:
                        self.peaks[horse.pid] = max(peak, self.peaks.get(horse.pid, 0))


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _idle_workers(stack: LocalStack) -> list[psutil.Process]:
    """The RQ worker processes under `archon-bot worker` (triage + run workers): its direct children."""
    assert stack.supervisor is not None
    [unit] = [child for name, child in stack.supervisor.children if name == "worker"]
    return psutil.Process(unit.pid).children()


def figures(quick: bool = False) -> list[Figure]:
    rounds = 1 if quick else 3
    singles: list[float] = []
    batches: list[float] = []
    # the default cap (5 runs per installation) would refuse part of a batch of 8
    with LocalStack(openapi=OPENAPI, run_workers=2, extra_env={"ARCHON_MAX_CONCURRENT_RUNS": "16"}) as stack:
        stack.add_sample_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "write"})
        assert stack.supervisor is not None
        [unit] = [child for name, child in stack.supervisor.children if name == "worker"]
        next_issue = iter(range(1, 10_000))
        singles.append(_runs(stack, [next(next_issue)]))  # warm-up: the mirror is made, imports done
        workers = _idle_workers(stack)
        idle = {p.pid: p.memory_info().rss for p in workers}
        supervisor_rss = psutil.Process(unit.pid).memory_info().rss
        with HorseSampler(workers) as sampler:
            for _ in range(rounds):
                singles.append(_runs(stack, [next(next_issue)]))
                batches.append(_runs(stack, [next(next_issue) for _ in range(8)]))
    one, eight = median(singles[1:]), median(batches)
    ideal = 8 * one / 2
    peaks = sorted(sampler.peaks.values())
    idle_mb = [rss / 2**20 for rss in idle.values()]
    return [
        Figure(
            NAME,
            "8 runs on 2 run workers ÷ ideal (8 × one run ÷ 2)",
            eight / ideal,
            detail=f"8 runs {eight:.2f} s, one run {one:.2f} s, ideal {ideal:.2f} s, rounds={rounds}",
        ),
        Figure(
            NAME,
            "RSS of an idle worker process (median)",
            median(idle_mb),
            unit=" MB",
            detail=(
                f"{len(idle_mb)} RQ workers: {', '.join(f'{mb:.0f}' for mb in sorted(idle_mb))} MB; "
                f"supervising `archon-bot worker` {supervisor_rss / 2**20:.0f} MB"
            ),
        ),
        Figure(
            NAME,
            "peak RSS of a work-horse (median / max)",
            median(peaks) / 2**20 if peaks else 0.0,
            unit=" MB",
            detail=f"max {max(peaks, default=0) / 2**20:.0f} MB over {len(peaks)} horses (VmHWM / 20 ms)",
        ),
    ]


if __name__ == "__main__":
    for figure in figures(quick="--quick" in sys.argv):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} {figure.detail}")
