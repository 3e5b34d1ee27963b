"""Sandbox overhead per command: the same commands through `Sandbox.run` with bubblewrap and without.

Both sides go through the one command runner (scrubbed environment, rlimits, pids cgroup, the bounded
output reader). The difference is what bubblewrap adds (namespaces, the mount table, its PID 1) set against
what its unsandboxed stand-in costs (`sandbox_reaper.py`, a Python process).
Interleaved (sandboxed, unsandboxed, sandboxed, ...) and repeated, in one run on one machine; reported
as medians and their ratio. Record the figures in docs/performance.md.

    .venv/bin/python scripts/bench_sandbox.py --repeat 30
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bot.sandbox import Sandbox, SandboxPolicy, bwrap_problem

COMMANDS = {
    "true": "true",
    "python3 -c pass": "python3 -c pass",
    "git status": "git status --short",
    "unittest (sample repo)": "python3 -m unittest discover -s tests -t . -q",
}


def _repo(root: Path) -> Path:
    """A small git repository with a test suite: the sample repository the demo uses."""
    from bot.sample_repo import FILES

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _time(box: Sandbox, command: str, root: Path) -> float:
    done = box.run(command, root=root, timeout_s=120)
    return done.duration_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if problem := bwrap_problem():
        raise SystemExit(f"bubblewrap is needed for this benchmark: {problem}")
    sandboxed, bare = Sandbox(SandboxPolicy()), Sandbox(SandboxPolicy(mode="off"))
    with tempfile.TemporaryDirectory() as scratch:
        root = _repo(Path(scratch) / "repo")
        print("| Command | unsandboxed p50 | sandboxed p50 | sandboxed ÷ unsandboxed |")
        print("| --- | --- | --- | --- |")
        for label, command in COMMANDS.items():
            _time(sandboxed, command, root), _time(bare, command, root)  # warm caches on both sides
            with_bwrap, without = [], []
            for _ in range(args.repeat):
                with_bwrap.append(_time(sandboxed, command, root))
                without.append(_time(bare, command, root))
            a, b = statistics.median(with_bwrap), statistics.median(without)
            ratio = f"{a / b:.2f}× (+{(a - b) * 1000:.1f} ms)"
            print(f"| `{label}` | {b * 1000:.1f} ms | {a * 1000:.1f} ms | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
