"""Where the time of a concurrent batch goes (issue 13, item 6): per run, when its delivery was accepted,
its triage job, its run job (queue wait, which worker and work-horse, run time), the DAG nodes; and the
CPU the whole stack burned during the batch, against what 2 cores can give.

A batch slower than 8 × one run ÷ 2 has one of three causes, and these figures tell them apart:
workers idle while runs wait (busy share < 1: serialization or dequeue gaps), runs slower under sharing
(slowdown > 1 with the cores saturated: CPU-bound, the ideal is out of reach), or runs slower with cores to
spare (a lock or a shared single-threaded service). Everything here is read from what the bot already
records — the run record in Redis (node start and finish) and RQ's job hash (enqueued, started, ended,
worker) — so the timeline is the bot's own, not the benchmark's guess.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import redis
from rq import Worker
from rq.job import Job

from bot.queue import TRIAGE_QUEUE
from bot.runs import RunRecord, RunStore


def epoch(moment: datetime | None) -> float | None:
    """RQ and the run record keep UTC datetimes (RQ's may be naive); seconds since the epoch compare."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class Horse:
    """A work-horse as the sampler saw it: its worker, when it was first and last alive, its peak RSS."""

    pid: int
    worker_pid: int
    first: float
    last: float
    peak: int = 0


SAMPLE_S = 0.1  # VmHWM is the kernel's own high-water mark: a sample need only catch the horse alive


def children(pid: int) -> list[int]:
    """The pids of `pid`'s children, from one /proc file: `psutil.Process.children()` scans every
    process on the machine, and at 50 passes a second that alone took half a core of the two."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []  # the worker is gone; the run's own failure says why


def horses(worker: int) -> list[int]:
    """A worker's work-horses: RQ's horse calls `os.setpgrp()` after the fork, so it leads its own process
    group; the RQ scheduler a worker may also fork (`with_scheduler=True`) stays in the worker's."""
    found = []
    for child in children(worker):
        try:
            if os.getpgid(child) == child:
                found.append(child)
        except ProcessLookupError:
            continue  # reaped since the listing: not running a job any more
    return found


class HorseSampler:
    """Every 100 ms, each process whose parent is a worker: its VmHWM (peak RSS) and when it was alive, so
    a run job can be matched to the work-horse pid that ran it (RQ does not record the horse).

    `resident`: the other children at the start (the RQ scheduler), for their RSS."""

    def __init__(self, workers: list[psutil.Process]) -> None:
        self.workers = {p.pid for p in workers}
        self.horses: dict[int, Horse] = {}
        self.resident: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def peaks(self) -> dict[int, int]:
        return {pid: horse.peak for pid, horse in self.horses.items() if horse.peak}

    def __enter__(self) -> HorseSampler:
        for pid in self.workers:
            for child in set(children(pid)) - set(horses(pid)):
                self.resident[child] = psutil.Process(child).memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            for pid in self.workers:
                for child in horses(pid):
                    self._saw(child, pid, time.time())

    def _saw(self, pid: int, worker_pid: int, at: float) -> None:
        horse = self.horses.setdefault(pid, Horse(pid, worker_pid, at, at))
        horse.last = at
        horse.peak = max(horse.peak, hwm(pid))

    def horse_of(self, worker_pid: int | None, started: float | None, ended: float | None) -> int | None:
        """The horse of `worker_pid` first seen nearest the job's start; None when the sampler missed it."""
        if worker_pid is None or started is None or ended is None:
            return None
        mine = [h for h in self.horses.values() if h.worker_pid == worker_pid and h.first <= ended]
        nearest = min(mine, key=lambda h: abs(h.first - started), default=None)
        return nearest.pid if nearest and abs(nearest.first - started) < 1.0 else None


def hwm(pid: int) -> int:
    """VmHWM in bytes; 0 when the process ended between listing and reading (its peak is already kept)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


@dataclass
class RunTimeline:
    """One run of a batch, every time in seconds from the batch's first delivery."""

    issue: int
    run_id: str
    accepted: float
    triage_started: float | None
    triage_ended: float | None
    enqueued: float | None
    started: float | None
    ended: float | None
    done_seen: float | None
    worker: str
    horse: int | None
    nodes: dict[str, float] = field(default_factory=dict)
    first_node_at: float | None = None
    last_node_end: float | None = None

    @property
    def wait(self) -> float | None:
        """Queue wait: the run job enqueued until a work-horse started it."""
        return None if self.enqueued is None or self.started is None else self.started - self.enqueued

    @property
    def run(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    @property
    def setup(self) -> float | None:
        """Job start to the first node's start: the horse's imports, token, record, worktree."""
        return (
            None if self.started is None or self.first_node_at is None else self.first_node_at - self.started
        )

    @property
    def finish(self) -> float | None:
        """Last node's end to the job's end: the final status and the run's bookkeeping."""
        return None if self.ended is None or self.last_node_end is None else self.ended - self.last_node_end


def _offset(moment: datetime | None, zero: float) -> float | None:
    at = epoch(moment)
    return None if at is None else at - zero


def _worker_pids(connection: redis.Redis) -> dict[str, int]:
    return {worker.name: worker.pid for worker in Worker.all(connection=connection) if worker.pid}


def _record(store: RunStore, repo: str, issue: int) -> RunRecord:
    records = [r for r in store.for_issue(repo, issue) if r.bench_id is None]
    if len(records) != 1:
        raise RuntimeError(f"issue #{issue} has {len(records)} run records, expected 1")
    return records[0]


def _ended(job_id: str, connection: redis.Redis, timeout: float = 60.0) -> Job:
    """The run's job once RQ has marked it ended: the Done comment lands before the job's own
    bookkeeping (final status, metrics, RQ's finish), so the benchmark can see Done a moment earlier."""
    deadline = time.monotonic() + timeout
    while True:
        job = Job.fetch(job_id, connection=connection)
        if job.ended_at is not None:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} said Done but has not ended after {timeout:g}s")
        time.sleep(0.05)


def collect(
    connection: redis.Redis,
    repo: str,
    batch: dict[int, tuple[str, float, float | None]],
    zero: float,
    sampler: HorseSampler | None,
) -> list[RunTimeline]:
    """The timeline of each issue of a batch: `batch` maps issue → (delivery id, accepted at, Done seen at),
    epoch seconds; `zero` is the first delivery's send time."""
    store = RunStore(connection)
    pids = _worker_pids(connection)
    timelines = []
    for issue, (delivery, accepted, done_seen) in sorted(batch.items()):
        record = _record(store, repo, issue)
        triage = Job.fetch(f"triage-{delivery}-0", connection=connection)
        if triage.origin != TRIAGE_QUEUE:
            raise RuntimeError(f"job {triage.id} came from {triage.origin}, not {TRIAGE_QUEUE}")
        job = _ended(record.job_id, connection)
        worker = job.worker_name or "?"
        started, ended = epoch(job.started_at), epoch(job.ended_at)
        node_starts = [epoch(n.started_at) for n in record.nodes.values() if n.started_at]
        node_ends = [epoch(n.finished_at) for n in record.nodes.values() if n.finished_at]
        timelines.append(
            RunTimeline(
                issue=issue,
                run_id=record.run_id,
                accepted=accepted - zero,
                triage_started=_offset(triage.started_at, zero),
                triage_ended=_offset(triage.ended_at, zero),
                enqueued=_offset(job.enqueued_at, zero),
                started=None if started is None else started - zero,
                ended=None if ended is None else ended - zero,
                done_seen=None if done_seen is None else done_seen - zero,
                worker=worker,
                horse=sampler.horse_of(pids.get(worker), started, ended) if sampler else None,
                nodes={n.id: n.duration_s for n in record.nodes.values() if n.duration_s is not None},
                first_node_at=min(node_starts) - zero if node_starts else None,  # type: ignore[type-var]
                last_node_end=max(node_ends) - zero if node_ends else None,  # type: ignore[type-var]
            )
        )
    return timelines


# -- CPU --------------------------------------------------------------------------------------------------


def _label(proc: psutil.Process, known: dict[int, str]) -> str:
    """The nearest labelled ancestor (itself included): horses, git and tests count for their worker."""
    for candidate in [proc, *proc.parents()]:
        if candidate.pid in known:
            return known[candidate.pid]
    return "other"


def stack_labels(root: psutil.Process, redis_pid: int | None) -> dict[int, str]:
    """Which long-lived process is which: the benchmark itself (it also serves the fake GitHub), Redis,
    gunicorn, the `archon-bot worker` supervisor, its triage worker and its run workers."""
    known = {root.pid: "bench + fake GitHub"}
    if redis_pid:
        known[redis_pid] = "redis"
    for proc in root.children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "gunicorn" in line:
            known.setdefault(proc.pid, "web (gunicorn)")
        elif "--queues" in line:
            known[proc.pid] = "triage worker" if TRIAGE_QUEUE in line else "run workers + horses"
        elif "--run-workers" in line:
            known[proc.pid] = "worker supervisor"
    return known


def tree_cpu(root: psutil.Process, known: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of every process under `root`, by label. A process's own time plus its reaped
    children's (`children_user/system`: horses, git, tests that already exited), so nothing is counted
    twice: a live child counts itself, a dead one counts in its parent once reaped."""
    totals: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            label = _label(proc, known)
        except psutil.NoSuchProcess:
            continue  # exited since the listing: its parent will count it when it reaps it
        spent = times.user + times.system + times.children_user + times.children_system
        totals[label] = totals.get(label, 0.0) + spent
    return totals


def machine_busy() -> float:
    """CPU seconds all cores have spent not idle since boot (everything on the machine, other work too)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class CpuWindow:
    """CPU of the stack and of the whole machine over one batch."""

    wall: float
    stack: dict[str, float]
    machine: float
    cores: int = field(default_factory=lambda: psutil.cpu_count() or 1)

    @property
    def stack_share(self) -> float:
        return sum(self.stack.values()) / (self.cores * self.wall)

    @property
    def machine_share(self) -> float:
        return self.machine / (self.cores * self.wall)


class CpuMeter:
    """`with CpuMeter(root, known) as meter:` … `meter.window`: the CPU spent inside the block."""

    def __init__(self, root: psutil.Process, known: dict[int, str]) -> None:
        self.root, self.known = root, known
        self.window: CpuWindow | None = None

    def __enter__(self) -> CpuMeter:
        self._started = time.perf_counter()
        self._tree = tree_cpu(self.root, self.known)
        self._machine = machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._started
        after = tree_cpu(self.root, self.known)
        spent = {label: after.get(label, 0.0) - self._tree.get(label, 0.0) for label in after}
        self.window = CpuWindow(wall, spent, machine_busy() - self._machine)


# -- report ---------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.2f}"


def busy_share(timelines: list[RunTimeline], workers: int, wall: float) -> float:
    """Sum of run-job times ÷ (workers × wall): 1.0 means no run worker was ever idle in the batch."""
    return sum(t.run or 0.0 for t in timelines) / (workers * wall)


def worker_gaps(timelines: list[RunTimeline]) -> list[float]:
    """Idle time on each worker between one job's end and its next job's start (dequeue, fork, setup)."""
    by_worker: dict[str, list[RunTimeline]] = {}
    for t in timelines:
        by_worker.setdefault(t.worker, []).append(t)
    gaps = []
    for runs in by_worker.values():
        runs.sort(key=lambda t: t.started or 0.0)
        gaps += [b.started - a.ended for a, b in itertools.pairwise(runs) if a.ended and b.started]
    return gaps


def render(
    timelines: list[RunTimeline], wall: float, alone: RunTimeline | None, cpu: CpuWindow | None
) -> str:
    """A compact table, one line per run (seconds from the first delivery), then the shares."""
    heads = "accept tri.s tri.e   enq start   end  wait   run setup finish  done"
    lines = [f"issue {heads}  worker/horse  nodes (s)"]
    for t in sorted(timelines, key=lambda t: t.started or 0.0):
        moments = [t.accepted, t.triage_started, t.triage_ended, t.enqueued, t.started, t.ended]
        spans = [t.wait, t.run, t.setup, t.finish, t.done_seen]
        nodes = " ".join(f"{k}={v:.2f}" for k, v in t.nodes.items())
        row = " ".join(_s(v) for v in moments + spans)
        lines.append(f"#{t.issue:<4} {row}  {t.worker[-6:]}/{t.horse or '?'}  {nodes}")
    runs = [t.run for t in timelines if t.run is not None]
    gaps = worker_gaps(timelines)
    lines.append(
        f"wall {wall:.2f} s; run workers busy {busy_share(timelines, 2, wall):.0%}; "
        f"run job mean {statistics.mean(runs):.2f} s (min {min(runs):.2f}, max {max(runs):.2f}); "
        f"gaps between jobs on a worker: {', '.join(f'{g:.2f}' for g in gaps)} s"
    )
    if alone is not None and alone.run:
        nodes = " ".join(f"{k}={v:.2f}" for k, v in alone.nodes.items())
        lines.append(
            f"run job alone {alone.run:.2f} s (nodes {nodes}); "
            f"slowdown under sharing {statistics.mean(runs) / alone.run:.2f}×"
        )
    if cpu is not None:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.stack.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"CPU: stack {sum(cpu.stack.values()):.1f} s = {cpu.stack_share:.0%} of {cpu.cores} cores × "
            f"{cpu.wall:.2f} s; whole machine {cpu.machine_share:.0%}  ({parts})"
        )
    return "\n".join(lines)
