"""Test environments on real projects: what detection finds, and environment creation cold and cached.

For each vendored real project (tests/data/projects, rebuilt as git repositories by tests/projects.py):
detect the plan on the `fix` branch, then run it twice in the sandbox with one fresh data directory — the
first build is cold (the virtualenv is created and the test dependencies are downloaded through the
package-index proxy), the second reuses the cached virtualenv. Reports the detected command, its source,
the set-up time of each (wall time of the install steps) and the test run's summary. Record the table in
docs/evaluation.md.

    .venv/bin/python scripts/bench_validation_env.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.sandbox import Sandbox, SandboxPolicy  # noqa: E402
from bot.validation.detect import detect  # noqa: E402
from bot.validation.validator import Validator, clone_at  # noqa: E402
from tests.projects import names, real_project  # noqa: E402


def _setup_seconds(run) -> float:
    return sum(step.duration_s for step in run.setup)


def main() -> int:
    print("| Project | Source | Command | Environment cold | cached | cached ÷ cold | Tests |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names():
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            project = real_project(name, work / "repo")
            checkout = clone_at(project.repo, project.fix, work / "checkout")
            plan = detect(checkout)
            data = work / "data"
            validator = Validator(plan, Sandbox(SandboxPolicy(hidden=(data,))), data)
            cold = validator.run(checkout)
            cached = validator.run(checkout)
            a, b = _setup_seconds(cold), _setup_seconds(cached)
            summary = cached.checks[0].summary if cached.checks else "-"
            print(
                f"| {name} {project.version} | {plan.source} | `{' && '.join(plan.commands)}` | "
                f"{a:.1f} s | {b:.1f} s | {b / a:.2f}× | {summary} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
