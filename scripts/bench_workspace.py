"""Workspaces (issue 13, item 3): what a later run's worktree costs on top of `git worktree add` — the
combined `prepare(fetch=True)` (freshness check overlapped with the checkout), and for comparison
`prepare` alone and `sync` then `prepare` one after the other —, 8 runs of one
repository starting together against 8 in a row, and a large repository's first run with a blobless
partial mirror against a full one. Remotes are local bare repositories (`file://`); sides interleave round
by round and figures are medians, since other work loads the same CPUs.

    .venv/bin/python scripts/bench_workspace.py [--quick]
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import Figure, median
from make_large_repo import make

from bot.workspace import Workspace

NAME = "workspace"
REPO = "bench/repo"
LARGE = "bench/large"


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _push(remote: Path, scratch: Path, tag: str) -> None:
    """One new commit on the remote's `main`, through a scratch clone (not timed)."""
    if not scratch.exists():
        _git("clone", "-q", str(remote), str(scratch))
    (scratch / "CHANGES").write_text(f"{tag}\n")
    _git("add", "-A", cwd=scratch)
    _git("-c", "user.name=b", "-c", "user.email=b@e", "commit", "-qm", tag, cwd=scratch)
    _git("push", "-q", "origin", "HEAD:main", cwd=scratch)


def _timed_pair(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Like `benchkit.interleaved`, but each side times only its own part (no set-up, no clean-up)."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, call in sides.items():
            samples[name].append(call())
    return samples


def _later_worktree(root: Path, remote_url: str, repo: str, rounds: int) -> dict[str, list[float]]:
    """A later run (mirror up to date): `prepare(fetch=True)`, which checks the remote for pushes while it
    checks out; `sync` then `prepare(fetch=False)`, one after the other; and `prepare` alone — against
    `git worktree add` of the same commit in the same mirror."""
    workspace = Workspace(root / "data", remote_url)
    mirror = workspace.sync(repo, token=None)
    sha = _git("--git-dir", str(mirror), "rev-parse", "refs/remotes/origin/HEAD")
    counter = iter(range(1_000_000))

    def bare_add() -> float:
        path = root / f"bare-{next(counter)}"
        started = time.perf_counter()
        _git("--git-dir", str(mirror), "worktree", "add", "--quiet", "--detach", str(path), sha)
        elapsed = time.perf_counter() - started
        _git("--git-dir", str(mirror), "worktree", "remove", "--force", str(path))
        return elapsed

    def run(how: str) -> Callable[[], float]:
        def call() -> float:
            run_id = f"r{next(counter)}"
            started = time.perf_counter()
            if how == "combined":
                worktree = workspace.prepare(repo, run_id, f"archon/{run_id}", token=None)
            else:
                if how == "serial":
                    workspace.sync(repo, token=None)
                worktree = workspace.prepare(
                    repo, run_id, f"archon/{run_id}", token=None, base=sha, fetch=False
                )
            elapsed = time.perf_counter() - started
            assert worktree.head() == sha
            workspace.remove(worktree)
            return elapsed

        return call

    sides = {"worktree add": bare_add, "prepare": run("alone"), "sync+prepare": run("combined")}
    return _timed_pair({**sides, "sync, then prepare": run("serial")}, rounds)


def _cpu() -> float:
    """CPU seconds this process and the children it has waited for (its git calls) have used."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _one_run(data_dir: str, remote_url: str, run_id: str) -> float:
    """A run's workspace in its own process, as an RQ work-horse gets it: the worktree (its freshness check
    overlapped), then the files of the commit it started from. Returns the CPU seconds it took, git's
    included, so the batch's figure can be set against what two cores can do at best."""
    started = _cpu()
    workspace = Workspace(Path(data_dir), remote_url)
    worktree = workspace.prepare(REPO, run_id, f"archon/{run_id}", token=None)
    workspace.snapshot(REPO, worktree.base_tip)
    worktree.release()
    return _cpu() - started


def _warm(_: int) -> None:
    import bot.workspace  # noqa: F401 - the work-horse has the bot imported before a run starts


def _eight(root: Path, remote: Path, rounds: int) -> dict[str, list[float]]:
    """8 runs after a push: one after the other, and all at once from 8 processes. Besides the wall times,
    per batch, what the runs cost in CPU (theirs and their git calls'): `cpu floor`, the in-a-row batch's
    CPU ÷ (cores × its wall time) — the together ratio if every core were kept busy with no more work
    than the runs in a row do; and `together cpu`, the together batch's CPU ÷ the in-a-row batch's (what
    running side by side adds: contention for the mirror's lock and the cores)."""
    url = f"file://{remote.parent.parent}"
    data = root / "eight"
    Workspace(data, url).sync(REPO, token=None)
    counter = iter(range(1_000_000))
    cores, cpu = os.cpu_count() or 1, {True: [], False: []}
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_warm, range(8))

        def batch(together: bool) -> float:
            _push(remote, root / "scratch", f"push {next(counter)}")
            ids = [f"r{next(counter)}" for _ in range(8)]
            started = time.perf_counter()
            if together:
                used = sum(pool.starmap(_one_run, [(str(data), url, run_id) for run_id in ids]))
            else:
                used = sum(pool.apply(_one_run, (str(data), url, run_id)) for run_id in ids)
            elapsed = time.perf_counter() - started
            cpu[together].append(used)
            workspace = Workspace(data, url)
            for run_id in ids:
                workspace.remove_run(run_id)
            return elapsed

        samples = _timed_pair({"in a row": lambda: batch(False), "together": lambda: batch(True)}, rounds)
    floors = [used / (cores * wall) for used, wall in zip(cpu[False], samples["in a row"], strict=True)]
    extra = [ours / theirs for ours, theirs in zip(cpu[True], cpu[False], strict=True)]
    return {**samples, "cpu floor": floors, "together cpu": extra}


def _first_run(root: Path, remotes: Path, rounds: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """A large repository's first run on a fresh data dir: full mirror, and blobless partial mirror."""
    url = f"file://{remotes}"
    sizes: dict[str, int] = {}
    counter = iter(range(1_000_000))

    def first(partial: bool) -> Callable[[], float]:
        def call() -> float:
            data = root / f"first-{next(counter)}"
            workspace = Workspace(data, url, partial=partial)
            started = time.perf_counter()
            workspace.sync(LARGE, token=None)
            files = workspace.snapshot(LARGE)
            workspace.prepare(LARGE, "r1", "archon/r1", token=None, base=files.commit, fetch=False).release()
            elapsed = time.perf_counter() - started
            sizes["partial" if partial else "full"] = _du(workspace.mirror_path(LARGE))
            shutil.rmtree(data)
            return elapsed

        return call

    return _timed_pair({"full": first(False), "partial": first(True)}, rounds), sizes


def _du(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _small_remote(root: Path) -> Path:
    """`bench/repo`: 200 small files, 50 commits."""
    remote = root / "remotes" / "bench" / "repo.git"
    return make(remote, commits=50, files=200, per_commit=3)


def figures(quick: bool = False) -> list[Figure]:
    rounds = 3 if quick else 15
    root = Path(tempfile.mkdtemp(prefix="bench-workspace-"))
    try:
        small = _small_remote(root)
        url = f"file://{root / 'remotes'}"
        make(root / "remotes" / "bench" / "large.git", commits=10_000, files=2_000)
        later = _later_worktree(root / "later", url, REPO, rounds)
        later_large = _later_worktree(root / "later-large", url, LARGE, max(3, rounds // 3))
        eight = _eight(root, small, max(2, rounds // 3))
        first, sizes = _first_run(root, root / "remotes", 2 if quick else 5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        *_later_figures("200 files", later),
        *_later_figures("2,000 files", later_large),
        _ratio(
            "8 runs together ÷ 8 in a row (after a push, 8 processes)", eight, "together", "in a row", 0.5
        ),
        Figure(
            NAME,
            f"8 runs: the CPU floor on {os.cpu_count()} cores (CPU of 8 in a row ÷ (cores × their wall))",
            median(eight["cpu floor"]),
            detail=f"the together ratio if every core were busy, n={len(eight['cpu floor'])}",
        ),
        Figure(
            NAME,
            "8 runs: CPU together ÷ CPU in a row (theirs and their git calls')",
            median(eight["together cpu"]),
            detail=f"what running side by side adds, n={len(eight['together cpu'])}",
        ),
        _ratio(
            "first run, 10,000 commits: partial ÷ full mirror",
            first,
            "partial",
            "full",
            None,
            f"; mirror {sizes.get('partial', 0) / 1e6:.1f} MB vs {sizes.get('full', 0) / 1e6:.1f} MB",
        ),
    ]


def _later_figures(label: str, samples: dict[str, list[float]]) -> list[Figure]:
    return [
        _ratio(
            f"later run's worktree ({label}): prepare ÷ worktree add", samples, "prepare", "worktree add", 1.1
        ),
        _ratio(
            f"later run's worktree ({label}): sync+prepare (one call, overlapped) ÷ worktree add",
            samples,
            "sync+prepare",
            "worktree add",
            1.1,
        ),
        _ratio(
            f"later run's worktree ({label}): sync, then prepare (one after the other) ÷ worktree add",
            samples,
            "sync, then prepare",
            "worktree add",
            None,
        ),
    ]


def _ratio(
    measure: str,
    samples: dict[str, list[float]],
    top: str,
    bottom: str,
    target: float | None,
    extra: str = "",
) -> Figure:
    a, b = median(samples[top]), median(samples[bottom])
    detail = f"median {a * 1000:.1f} ms vs {b * 1000:.1f} ms, n={len(samples[top])}{extra}"
    return Figure(NAME, measure, a / b, target=target, detail=detail)


if __name__ == "__main__":
    for figure in figures(quick="--quick" in sys.argv):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} (target {figure.target}) {figure.detail}")
