"""What validation knows, as pydantic models: the single source of truth for the validate node's outputs,
the evaluation's before/after signals, the review's validation section and the judge's prompt.

The flow: `detect` reads a checkout and returns a `ValidationPlan` (the commands and where they came from);
`environment` builds the checkout's test environment (`setup` steps, cached); `run` executes the plan in the
sandbox and returns a `ValidationRun` of `CheckRun`s, each with its runner's summary and per-test outcomes;
`baseline` compares the run on the change with the run on the merge base (`Comparison`) and proves the
fix (`FixProof`: the change's new tests against the old code).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CheckStatus(StrEnum):
    """How one command ended. `could_not_run` is not `failed`: a collection error, no tests found, a
    missing tool or a broken environment says nothing about the change's correctness."""

    PASSED = "passed"
    FAILED = "failed"
    COULD_NOT_RUN = "could_not_run"
    TIMED_OUT = "timed_out"


class TestOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


class ValidationPlan(BaseModel):
    """How to check a checkout: install steps, then test commands, and where that came from."""

    model_config = ConfigDict(frozen=True)

    ecosystem: str = Field("", description="python, node, go, rust, make — or empty when unknown.")
    source: str = Field(
        "", description="Where the commands came from, for people: `.github/archon.yml`, `tox.ini [testenv]`…"
    )
    setup: tuple[str, ...] = Field((), description="Install steps, run with package-index access only.")
    commands: tuple[str, ...] = Field((), description="Test commands, run with no network.")
    python_env: bool = Field(False, description="Run in a per-checkout Python virtualenv (built by `setup`).")
    import_check: str | None = Field(
        None, description="Top-level package that must import from the checkout, not from site-packages."
    )

    @property
    def empty(self) -> bool:
        return not self.commands


class CheckRun(BaseModel):
    """One command's result, kept for people, the implementer and the judge."""

    command: str
    status: CheckStatus
    exit_code: int | None = Field(None, description="None when the command never started.")
    duration_s: float = 0.0
    summary: str = Field("", description="The runner's own summary line: `3 failed, 41 passed in 0.52s`.")
    reason: str = Field("", description="Why it could not run (for `could_not_run`), in one line.")
    tests: dict[str, TestOutcome] = Field(
        default_factory=dict, description="Per-test outcomes by id (`tests/test_x.py::test_y`), when known."
    )
    output: str = Field("", description="Head and tail of the output, redacted.")


class ValidationRun(BaseModel):
    """A plan executed on one checkout (the change, or the merge base)."""

    plan: ValidationPlan
    commit: str = ""
    setup: list[CheckRun] = Field(default_factory=list)
    checks: list[CheckRun] = Field(default_factory=list)
    environment: str = Field("", description="The environment used, e.g. `venv 3.11 (cached 1a2b3c)`.")

    @property
    def status(self) -> CheckStatus:
        """The worst status: could-not-run in setup wins, then timed out, failed, passed."""
        if any(s.status is not CheckStatus.PASSED for s in self.setup) or not self.checks:
            return CheckStatus.COULD_NOT_RUN
        for status in (CheckStatus.COULD_NOT_RUN, CheckStatus.TIMED_OUT, CheckStatus.FAILED):
            if any(c.status is status for c in self.checks):
                return status
        return CheckStatus.PASSED

    def outcomes(self) -> dict[str, TestOutcome]:
        """Every test's outcome across the commands (a later command's result for the same id wins)."""
        merged: dict[str, TestOutcome] = {}
        for check in self.checks:
            merged.update(check.tests)
        return merged


class Comparison(BaseModel):
    """The change's run against the merge base's: what the change broke, fixed, and left as it was."""

    passed: bool = Field(description="No test that passed on the base fails now, and the named tests pass.")
    status: CheckStatus = Field(description="The change's own run status.")
    new_failures: list[str] = Field(default_factory=list, description="Passed (or absent) before, fail now.")
    pre_existing: list[str] = Field(default_factory=list, description="Failed on the base as well.")
    fixed: list[str] = Field(default_factory=list, description="Failed on the base, pass now.")
    vanished: list[str] = Field(
        default_factory=list,
        description="Passed on the base, now skipped or absent (deleted, not collected).",
    )
    named_missing: list[str] = Field(
        default_factory=list, description="Tests the plan names that did not pass (or did not run)."
    )
    reason: str = Field("", description="One line for people and for the implementer's next attempt.")


class FixProof(BaseModel):
    """The change's new or changed tests, run against the old code: the one fact that proves a fix."""

    tests: list[str] = Field(default_factory=list, description="New or changed tests, by id.")
    fail_before: list[str] = Field(default_factory=list, description="Of those, failed on the old code.")
    pass_after: list[str] = Field(default_factory=list, description="Of those, pass on the new code.")
    proven: list[str] = Field(default_factory=list, description="Failed before and pass after.")
    ran: bool = Field(False, description="False when there were no such tests, or they could not run.")
    note: str = Field("", description="Why it did not run, or what it showed, in one line.")

    def headline(self) -> str:
        if not self.ran:
            return self.note or "no new tests to run against the old code"
        n = len(self.proven)
        return f"{n} new test{'s' if n != 1 else ''} fail on the old code and pass on the new" + (
            "" if n == len(self.tests) else f" (of {len(self.tests)} new or changed)"
        )


class Evidence(BaseModel):
    """Everything validation measured about one change, as the evaluation receives it."""

    base: ValidationRun | None = None
    after: ValidationRun
    comparison: Comparison
    proof: FixProof | None = None

    @property
    def before_passed(self) -> bool | None:
        """Whether the merge base passed its own checks; None when it did not run."""
        return None if self.base is None else self.base.status is CheckStatus.PASSED
