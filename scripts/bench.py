"""Every benchmark in one command, one table: `python scripts/bench.py all` (or name one or more).

Each benchmark is a module `scripts/bench_<name>.py` with `figures(quick: bool) -> list[Figure]`
(`scripts/benchkit.py`). Figures are ratios against a baseline measured in the same run; where the issue
sets a target it is shown beside the figure, and a miss is marked. Record the table in
docs/performance.md with the date, the machine and the method.

    .venv/bin/python scripts/bench.py all            # everything (minutes)
    .venv/bin/python scripts/bench.py front-door sloppy --quick
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import Figure

#: name on the command line → module in scripts/ (in the order `all` runs them).
BENCHMARKS = {
    "front-door": "bench_front_door",
    "github": "bench_github_traffic",
    "workspace": "bench_workspace",
    "harness": "bench_harness",
    "long-run": "bench_long_run",
    "concurrency": "bench_concurrency",
    "sloppy": "bench_sloppy",
}


def available() -> dict[str, str]:
    here = Path(__file__).resolve().parent
    return {name: module for name, module in BENCHMARKS.items() if (here / f"{module}.py").exists()}


def run(names: list[str], quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        module = importlib.import_module(available()[name])
        started = time.monotonic()
        figures.extend(module.figures(quick=quick))
        print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return figures


def table(figures: list[Figure]) -> Table:
    out = Table(title=f"Archon Bot benchmarks — {platform.node()}, {time.strftime('%Y-%m-%d')}")
    for column in ("benchmark", "measure", "value", "target", "met", "detail"):
        out.add_column(column)
    for figure in figures:
        bound = "≤" if figure.better == "lower" else "≥"
        target = "" if figure.target is None else f"{bound} {figure.target:g}"
        met = {None: "", True: "yes", False: "MISSED"}[figure.met]
        value = f"{figure.value:.3g}{figure.unit}"
        out.add_row(figure.benchmark, figure.measure, value, target, met, figure.detail)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="+", help=f"all, or any of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run only")
    args = parser.parse_args(argv)
    names = list(available()) if args.names == ["all"] else args.names
    unknown = [name for name in names if name not in available()]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
    figures = run(names, args.quick)
    Console(width=160).print(table(figures))
    return 1 if any(figure.met is False for figure in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
