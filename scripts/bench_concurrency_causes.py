"""Why 8 runs on 2 workers miss 8 × one run ÷ 2 (issue 13, item 6): the same batch under variants that
each remove one suspected cost, side by side, variants taking turns round by round.

- `base`: the benchmark as `bench_concurrency.py` runs it.
- `preload`: every RQ worker process imports `bot.jobs` before it forks work-horses (what a one-line
  change in `bot/worker.py` would do). Without it each horse, triage and run alike, imports the job
  module afresh after the fork: RQ resolves `bot.jobs.execute_run` by name inside the horse. Simulated
  here by a `sitecustomize` on the workers' PYTHONPATH, so the bot itself is unchanged.
- `no-openapi`: the fake GitHub without validating every request and answer against GitHub's OpenAPI
  description (harness CPU, in the benchmark's own process, on the same 2 cores).

    .venv/bin/python scripts/bench_concurrency_causes.py [--rounds N] [--variants base,preload]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_concurrency import RUN_WORKERS, Batch, Measured, measure
from bench_concurrency_timeline import busy_share

# Imported at interpreter start by every process of the stack that has this directory on its path; only
# an RQ worker (`archon-bot worker --queues …`) preloads, so web and supervisor stay as they are.
SITECUSTOMIZE = """
from pathlib import Path

if b"--queues" in Path("/proc/self/cmdline").read_bytes().split(b"\\0"):
    import bot.jobs  # noqa: F401
"""


def _preload_env(directory: Path) -> dict[str, str]:
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"PYTHONPATH": str(directory)}


def _mean(values: list[float]) -> float:
    return statistics.mean(values)


def _summary(name: str, measured: Measured) -> str:
    def per(batch: Batch, attr: str) -> float:
        return _mean([getattr(t, attr) for t in batch.timelines if getattr(t, attr) is not None])

    singles, batches = measured.singles, measured.batches
    pairs = list(zip(singles, batches, strict=True))
    ratio = statistics.median(b.wall / (8 * s.wall / RUN_WORKERS) for s, b in pairs)
    triage = [
        _mean([t.triage_ended - t.triage_started for t in b.timelines if t.triage_ended and t.triage_started])
        for b in batches
    ]
    return (
        f"{name:11} ratio {ratio:.2f}×  one run {statistics.median(s.wall for s in singles):.2f} s  "
        f"8 runs {statistics.median(b.wall for b in batches):.2f} s  "
        f"run job alone {statistics.median(per(s, 'run') for s in singles):.2f} s "
        f"(setup {statistics.median(per(s, 'setup') for s in singles):.2f})  "
        f"in batch {statistics.median(per(b, 'run') for b in batches):.2f} s "
        f"(setup {statistics.median(per(b, 'setup') for b in batches):.2f})  "
        f"triage in batch {statistics.median(triage):.2f} s  "
        f"busy {statistics.median(busy_share(b.timelines, RUN_WORKERS, b.wall) for b in batches):.2f}  "
        f"CPU s alone {statistics.median(sum(s.cpu.stack.values()) for s in singles):.1f} "
        f"batch {statistics.median(sum(b.cpu.stack.values()) for b in batches):.1f}  "
        f"stack CPU share {statistics.median(b.cpu.stack_share for b in batches):.2f} "
        f"machine {statistics.median(b.cpu.machine_share for b in batches):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="turns of all variants (one stack each)")
    parser.add_argument("--variants", default="base,preload,no-openapi")
    parser.add_argument("--timeline", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[Measured]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-preload-") as tmp:
        variants = {
            "base": lambda: measure(1, args.timeline),
            "preload": lambda: measure(1, args.timeline, env=_preload_env(Path(tmp))),
            "no-openapi": lambda: measure(1, args.timeline, openapi=None),
        }
        chosen = args.variants.split(",")
        for index in range(args.rounds):
            for name in chosen:
                print(f"== round {index + 1} {name}", file=sys.stderr)
                results.setdefault(name, []).append(variants[name]())
                print(_summary(name, results[name][-1]), flush=True)
    print("== all rounds (medians per stack)")
    for name, runs in results.items():
        merged = Measured(
            [s for m in runs for s in m.singles], [b for m in runs for b in m.batches], {}, {}, 0, []
        )
        print(_summary(name, merged))


if __name__ == "__main__":
    main()
