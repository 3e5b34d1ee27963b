"""Execute a `ValidationPlan` on one checkout: its environment, then each test command, in the sandbox.

Tests run with no network, the environment read-only and the checkout as the only writable place the
repository knows of. JUnit XML goes to a per-run scratch directory outside the checkout (mounted writable
for the command), so the report never shows up in the change's diff. With `tests`, only those tests run —
the change's new tests against the old code, the one run that proves a fix.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.sandbox import Sandbox
from bot.validation.environment import Environment, Progress, prepare
from bot.validation.schema import CheckRun, CheckStatus, ValidationPlan, ValidationRun


def run_plan(
    plan: ValidationPlan,
    checkout: Path,
    *,
    sandbox: Sandbox,
    data_dir: Path,
    timeout_s: float = 900,
    progress: Progress = None,
    tests: Sequence[str] = (),
) -> ValidationRun:
    """Build or reuse the environment, run each command (only `tests` when given), and collect the results.
    A set-up step that fails ends the run there: nothing it would report could be trusted."""
    checkout = Path(checkout).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="archon-validate-"))
    try:
        env = prepare(
            plan, checkout, sandbox=sandbox, data_dir=data_dir, scratch=scratch, timeout_s=timeout_s,
            progress=progress,
        )  # fmt: skip
        run = ValidationRun(plan=plan, commit=_head(checkout), setup=env.setup, environment=env.description)
        if env.ready:
            run.checks = _checks(plan, checkout, env, sandbox, scratch, timeout_s, progress, tests)
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _checks(
    plan: ValidationPlan,
    checkout: Path,
    env: Environment,
    sandbox: Sandbox,
    scratch: Path,
    timeout_s: float,
    progress: Progress,
    tests: Sequence[str],
) -> list[CheckRun]:
    commands = [c for c in (selecting(command, tests) for command in plan.commands) if c]
    if not commands:
        reason = "no command here can run single tests (pytest or unittest)"
        return [CheckRun(command=" ".join(tests), status=CheckStatus.COULD_NOT_RUN, reason=reason)]
    reports = scratch / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    return [
        _check(command, checkout, env, sandbox, reports / f"{i}.xml", timeout_s, progress)
        for i, command in enumerate(commands)
    ]


def _check(
    command: str,
    checkout: Path,
    env: Environment,
    sandbox: Sandbox,
    junit: Path,
    timeout_s: float,
    progress: Progress,
) -> CheckRun:
    """One test command, no network; the JUnit report (pytest) read back when it was written."""
    from bot.validation.results import check_run, with_junit

    full = with_junit(command, str(junit)) or command
    done = sandbox.run(
        full, root=checkout, timeout_s=timeout_s, env=env.env, network="none",
        writable=[junit.parent], readable=env.readable,
    )  # fmt: skip
    xml = junit.read_text(errors="replace") if junit.is_file() else None
    output = done.output.decode(errors="replace")
    result = check_run(command, done.exit_code, done.duration_s, output, done.timed_out, junit_xml=xml)
    if progress is not None:
        progress(f"$ {command} … {result.summary or result.reason or result.status.value}")
    return result


def selecting(command: str, tests: Sequence[str]) -> str | None:
    """`command` narrowed to `tests`: pytest node ids appended, unittest discovery replaced by the dotted
    ids; None when `tests` are given and the command's runner cannot select them. Unchanged without tests."""
    from bot.validation.results import runner_of

    if not tests:
        return command
    runner = runner_of(command)
    if runner == "pytest":
        return f"{command} {' '.join(shlex.quote(t) for t in tests)}"
    if runner == "unittest":
        ids = " ".join(shlex.quote(_dotted(t)) for t in tests)
        prefix = re.split(r"\s-m\s+unittest\b", command, maxsplit=1)[0]
        return f"{prefix} -m unittest -v {ids}"
    return None


def _dotted(test_id: str) -> str:
    """`tests/test_x.py::Case::test_y` as unittest's `tests.test_x.Case.test_y`; dotted ids unchanged."""
    path, _, rest = test_id.partition("::")
    if not path.endswith(".py"):
        return test_id
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *filter(None, rest.split("::"))])


def _head(checkout: Path) -> str:
    """The checkout's commit, or "" when it is not a git repository."""
    from bot.workspace import WorkspaceError, git_text

    with contextlib.suppress(WorkspaceError, OSError):
        return git_text(["rev-parse", "HEAD"], cwd=checkout).strip()
    return ""
