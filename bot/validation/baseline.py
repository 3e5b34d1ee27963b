"""The change's validation run judged against the merge base's: what the change broke, fixed and left as
it was, whether its new tests prove the fix, and how to say so to people and to the implementer.

Pure functions over the schema models; the rules:

- Per-test outcomes known on both sides of a command (same command string): it passes when no test that
  passed on the base fails (failed/error) now, and none that passed is now skipped or absent (`vanished`:
  a deleted, renamed or skipped test no longer checks anything). Failing on both sides is pre-existing,
  failing before and passing now is fixed, a new test that fails is a new failure.
- Outcomes unknown (a runner without JUnit XML or `-v` lines): the command's status decides. Failing on
  the base and failing now is pre-existing when it did not get worse — fewer or as many failures by the
  runner's own counts (`3 failed`, `failures=2`, `fail 1`) when both summaries have them, else the same
  exit code. The failing command stands in for the test ids in `new_failures`/`pre_existing`.
- No usable base run (none, or the base could not run that command): passes only when the command passed.
- The change's run could not run or timed out: not passed, and the reason says what broke and whether the
  base branch ran — a broken environment is not blamed on the change.
- Every test the plan names must pass now.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

from bot.evaluation.signals import is_test_path
from bot.validation.results import failure_excerpt
from bot.validation.schema import CheckRun, CheckStatus, Comparison, FixProof, TestOutcome, ValidationRun

FAILING = frozenset({TestOutcome.FAILED, TestOutcome.ERROR})
RAN = frozenset({CheckStatus.PASSED, CheckStatus.FAILED})
"""Statuses of a command whose tests ran: only those say anything about the code."""
LISTED = 3
"""Test ids named in a one-line reason before "and N more"."""
SHOWN = 20
"""Test ids listed per section of the feedback and the markdown."""
STATUS_WORDS = {
    CheckStatus.PASSED: "passed",
    CheckStatus.FAILED: "failed",
    CheckStatus.COULD_NOT_RUN: "could not run",
    CheckStatus.TIMED_OUT: "timed out",
}
PRE_EXISTING_LABEL = "already failing on the base branch — not caused by your change, do not try to fix them"


# --- compare ---------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    new_failures: list[str] = field(default_factory=list)
    pre_existing: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    unbased: bool = False  # some command had no usable base run to compare with


def compare(base: ValidationRun | None, after: ValidationRun, named: Sequence[str] = ()) -> Comparison:
    """The change's run (`after`) against the merge base's (`base`, None when there is none)."""
    outcomes = after.outcomes()
    missing = [name for name in named if not _passes(name, outcomes)]
    if after.status not in RAN:
        return Comparison(
            passed=False, status=after.status, named_missing=list(named), reason=_broken_reason(base, after)
        )
    tally = _Tally()
    for check in after.checks:
        _compare_check(_counterpart(base, check), check, tally)
    passed = not (tally.new_failures or tally.vanished or missing)
    return Comparison(
        passed=passed,
        status=after.status,
        new_failures=_unique(tally.new_failures),
        pre_existing=_unique(tally.pre_existing),
        fixed=_unique(tally.fixed),
        vanished=_unique(tally.vanished),
        named_missing=missing,
        reason=_reason(passed, tally, missing),
    )


def _counterpart(base: ValidationRun | None, check: CheckRun) -> CheckRun | None:
    """The base run of the same command, when it ran its tests (could-not-run says nothing)."""
    if base is None:
        return None
    same = [c for c in base.checks if c.command == check.command]
    return same[0] if same and same[0].status in RAN else None


def _compare_check(before: CheckRun | None, check: CheckRun, tally: _Tally) -> None:
    failing_now = [t for t, o in check.tests.items() if o in FAILING]
    if before is None:
        tally.unbased = True
        if check.status is CheckStatus.FAILED:
            tally.new_failures += failing_now or [check.command]
        return
    if check.tests and before.tests and (failing_now or check.status is CheckStatus.PASSED):
        _compare_tests(before.tests, check.tests, tally)
    elif check.status is CheckStatus.FAILED:
        worse = before.status is CheckStatus.PASSED or _got_worse(before, check)
        (tally.new_failures if worse else tally.pre_existing).append(check.command)


def _compare_tests(before: dict[str, TestOutcome], now: dict[str, TestOutcome], tally: _Tally) -> None:
    for test_id, outcome in now.items():
        was = before.get(test_id)
        if outcome in FAILING:
            (tally.pre_existing if was in FAILING else tally.new_failures).append(test_id)
        elif outcome is TestOutcome.PASSED and was in FAILING:
            tally.fixed.append(test_id)
    tally.vanished += [
        t
        for t, o in before.items()
        if o is TestOutcome.PASSED and now.get(t) not in {TestOutcome.PASSED, *FAILING}
    ]


_COUNTS = re.compile(r"(\d+) (?:failed|failing|errors?)\b|\b(?:failures|errors)=(\d+)|\bfail (\d+)")


def _failure_count(summary: str) -> int | None:
    """Failures and errors by the runner's own summary, None when it gives no count."""
    found = _COUNTS.findall(summary)
    return sum(int(next(n for n in groups if n)) for groups in found) if found else None


def _got_worse(before: CheckRun, now: CheckRun) -> bool:
    """More failures than on the base by both summaries' counts; without counts, another exit code."""
    was, is_now = _failure_count(before.summary), _failure_count(now.summary)
    if was is not None and is_now is not None:
        return is_now > was
    return before.exit_code != now.exit_code


def _passes(name: str, outcomes: dict[str, TestOutcome]) -> bool:
    """A named test passes when every test it stands for (its parameters, a class's or file's tests) ran
    and passed; skipped or absent is not passing."""
    matching = [o for t, o in outcomes.items() if t == name or t.startswith((f"{name}[", f"{name}::"))]
    return bool(matching) and all(o is TestOutcome.PASSED for o in matching)


def _broken_reason(base: ValidationRun | None, after: ValidationRun) -> str:
    """Why the change's run did not run, and whether the base branch did: never "the change failed"."""
    broken = _first_broken(after)
    what = (broken.reason or broken.summary or broken.command) if broken else "no test command"
    head = f"{STATUS_WORDS[after.status]}: {what}"
    if base is None:
        return head
    if base.status not in RAN:
        return f"{head} (the base branch could not run either — not caused by the change)"
    return f"{head} (the base branch ran, so the change may be the cause)"


def _first_broken(run: ValidationRun) -> CheckRun | None:
    """The set-up step that did not pass, or the command that did not run."""
    setup = (s for s in run.setup if s.status is not CheckStatus.PASSED)
    return next(setup, None) or next((c for c in run.checks if c.status not in RAN), None)


def _reason(passed: bool, tally: _Tally, missing: list[str]) -> str:
    parts = []
    if tally.new_failures:
        parts.append(f"{_count(tally.new_failures, 'new failure')}: {_listed(tally.new_failures)}")
    if tally.vanished:
        parts.append(f"{_count(tally.vanished, 'test')} passing on the base no longer pass or run: "
                     f"{_listed(tally.vanished)}")  # fmt: skip
    if missing:
        parts.append(f"named in the plan, not passing: {_listed(missing)}")
    if tally.pre_existing:
        parts.append(f"{len(tally.pre_existing)} already failing on the base branch")
    if tally.fixed:
        parts.append(f"{len(tally.fixed)} fixed")
    if tally.unbased:
        parts.append("no base run to compare with")
    if passed and not (tally.pre_existing or tally.fixed):
        parts.insert(0, "every check passes")
    return f"{'passed' if passed else 'failed'}: {'; '.join(parts)}"


def _count(items: Sequence[str], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _listed(items: Sequence[str], limit: int = LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- which tests -------------------------------------------------------------------------------------

_BARE_TEST = re.compile(r"(?<![\w/-])(test\w*)(?![\w/\[]|\.\w)")


def named_tests(plan_text: str, test_ids: Iterable[str]) -> list[str]:
    """The test ids a plan names: by full id, by `file::name` or `Class.name`, by a bare `test_…` name
    when it belongs to one test function only (all its parameters), by test file (all its tests)."""
    ids = _unique(test_ids)
    chosen = {t for t in ids if any(_mentions(plan_text, form) for form in _forms(t))}
    chosen |= {t for t in ids if _file_mentioned(plan_text, _file_of(t))}
    functions: dict[str, set[str]] = {}
    for test_id in ids:
        functions.setdefault(_function(test_id), set()).add(_base(test_id))
    for name in set(_BARE_TEST.findall(plan_text)):
        if len(bases := functions.get(name, set())) == 1:
            chosen |= {t for t in ids if _base(t) in bases}
    return [t for t in ids if t in chosen]


def _forms(test_id: str) -> set[str]:
    """How a plan may write one test: the id, without parameters, without classes, as `Class.name`."""
    forms = {test_id}
    if "::" in test_id:
        parts = test_id.split("::")
        forms |= {f"{parts[0]}::{parts[-1]}", ".".join(parts[1:])} if len(parts) > 2 else set()
    elif test_id.count(".") >= 2:
        forms.add(".".join(test_id.split(".")[-2:]))
    return forms | {_base(form) for form in forms}


def _mentions(text: str, form: str) -> bool:
    return re.search(rf"(?<![\w./:-]){re.escape(form)}(?![\w/-]|::|\.\w|\[)", text) is not None


def _file_mentioned(text: str, path: str) -> bool:
    """A test file named on its own (`tests/test_x.py`, or `test_x.py`), not as part of a test id."""
    name = PurePosixPath(path).name
    pattern = rf"(?<![\w./-])((?:\./)?[\w./-]*?{re.escape(name)})(?![\w/-]|::|\.\w)"
    for match in re.finditer(pattern, text):
        token = match[1].removeprefix("./")
        if path == token or path.endswith(f"/{token}"):
            return True
    return False


def _base(test_id: str) -> str:
    """The id without pytest parameters: `t.py::test_x[1]` → `t.py::test_x`."""
    return test_id.split("[", 1)[0] if test_id.endswith("]") else test_id


def _function(test_id: str) -> str:
    base = _base(test_id)
    return base.rsplit("::", 1)[-1] if "::" in base else base.rsplit(".", 1)[-1]


def _file_of(test_id: str) -> str:
    """The test's file: a pytest id's path; a unittest id's module (up to its first CamelCase part)."""
    if "::" in test_id:
        return test_id.split("::", 1)[0]
    parts = test_id.split(".")
    module = next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts) - 1)
    return "/".join(parts[: max(module, 1)]) + ".py"


def _in_file(test_id: str, path: str) -> bool:
    """Whether a test lives in `path`, allowing ids relative to a sub-directory (pytest's rootdir, or
    unittest's top-level directory)."""
    own = _file_of(test_id)
    if "::" in test_id:
        return own == path or path.endswith(f"/{own}") or own.endswith(f"/{path}")
    parts = PurePosixPath(path).with_suffix("").parts
    return any(test_id.startswith(".".join(parts[k:]) + ".") for k in range(len(parts)))


_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)")


def changed_tests(diff_text: str, after: ValidationRun) -> list[str]:
    """The ids of tests the diff adds or changes: in each added or modified test file, the test functions
    whose lines it adds, else (no function-level information) every test of the file."""
    try:
        patches = PatchSet(diff_text)
    except UnidiffParseError:
        return []
    ids = list(after.outcomes())
    chosen: list[str] = []
    for patched in patches:
        if patched.is_removed_file or not is_test_path(patched.path):
            continue
        in_file = [t for t in ids if _in_file(t, patched.path)]
        names = _changed_functions(patched)
        chosen += [t for t in in_file if _function(t) in names] or in_file
    return _unique(chosen)


def _changed_functions(patched: PatchedFile) -> set[str]:
    """`test…` functions with added lines: the enclosing `def` from the hunk's lines, or from its header
    (git's function context) when the hunk starts inside one."""
    names: set[str] = set()
    for hunk in patched:
        current = _test_def(hunk.section_header or "", None)
        for line in hunk:
            if line.is_removed:
                continue
            current = _test_def(line.value, current)
            if line.is_added and current and line.value.strip():
                names.add(current[0])
    return names


def _test_def(text: str, current: tuple[str, int] | None) -> tuple[str, int] | None:
    """The test function a line is in: a `def test…` starts one; a sibling or outer `def` ends it."""
    found = _DEF.match(text)
    if not found:
        return current
    indent = len(found[1])
    if found[2].startswith("test"):
        return found[2], indent
    return None if current is None or indent <= current[1] else current


# --- the fix proof -------------------------------------------------------------------------------------

_IMPORT_FAILURES = (
    re.compile(r"^E\s+((?:ImportError|ModuleNotFoundError|AttributeError|NameError)\b.*)$", re.MULTILINE),
    re.compile(r"^((?:ImportError|ModuleNotFoundError|AttributeError|NameError)\b.*)$", re.MULTILINE),
)


def prove_fix(tests: Sequence[str], on_base: ValidationRun | None, after: ValidationRun) -> FixProof:
    """Whether the change's new or changed tests fail on the old code and pass on the new.

    `on_base` is those tests run against the old code. A test counts as failing there when it failed or
    errored, when its file, module or class errored (a pytest collection error, a unittest module that did
    not import, a failing `setUpClass`), or — when no per-test outcome came back — when the run stopped at
    an ImportError, AttributeError or NameError: the typical new test imports what the fix adds, and not
    loading on the old code is the old code failing it. A broken environment (a missing runner, failed
    set-up, a timeout) proves nothing: then `ran` is False."""
    tests = _unique(tests)
    outcomes = after.outcomes()
    pass_after = [t for t in tests if outcomes.get(t) is TestOutcome.PASSED]
    if not tests:
        return FixProof(note="the change adds or changes no tests")
    if on_base is None:
        return FixProof(tests=tests, pass_after=pass_after, note="the new tests were not run on the old code")
    base = on_base.outcomes()
    known = {t: o for t in tests if (o := _outcome_on_base(t, base)) is not None}
    how = "failed or errored there"
    if not known:
        if (cause := _import_failure(on_base)) is None:
            return FixProof(tests=tests, pass_after=pass_after, note=_not_run_note(on_base))
        known, how = dict.fromkeys(tests, TestOutcome.ERROR), f"they do not load there: {cause}"
    fail_before = [t for t in tests if known.get(t) in FAILING]
    proven = [t for t in fail_before if t in pass_after]
    note = _proof_note(tests, fail_before, proven, known, how)
    return FixProof(
        tests=tests, fail_before=fail_before, pass_after=pass_after, proven=proven, ran=True, note=note
    )


def _outcome_on_base(test_id: str, base: dict[str, TestOutcome]) -> TestOutcome | None:
    """The test's outcome on the old code, or the error of the file, module or class that holds it
    (unittest names a module that did not import by the part it tried last: `test_x` for `tests.test_x`)."""
    if test_id in base:
        return base[test_id]
    for holder, outcome in base.items():
        if outcome is TestOutcome.ERROR and _holds(holder, test_id):
            return outcome
    return None


def _holds(holder: str, test_id: str) -> bool:
    if "::" in test_id:
        return test_id.startswith(f"{holder}::")
    return test_id.startswith(f"{holder}.") or f".{holder}." in f".{test_id}."


def _import_failure(run: ValidationRun) -> str | None:
    """The import-time error that stopped the run on the old code, when its environment was sound."""
    if any(s.status is not CheckStatus.PASSED for s in run.setup):
        return None
    for check in run.checks:
        if check.status is not CheckStatus.COULD_NOT_RUN or "not installed" in check.reason:
            continue
        for pattern in _IMPORT_FAILURES:  # pytest's `E   …` line is the cause, not its headline
            if found := pattern.search(check.output):
                return found[1].strip()[:160]
    return None


def _not_run_note(run: ValidationRun) -> str:
    broken = _first_broken(run)
    why = (broken.reason or broken.summary) if broken else "no outcome for them came back"
    return f"the new tests could not run on the old code: {why}"


def _proof_note(
    tests: list[str], fail_before: list[str], proven: list[str], known: dict[str, TestOutcome], how: str
) -> str:
    if not fail_before:
        return "the new tests pass on the old code too: they do not show the bug"
    note = f"{len(fail_before)} of {len(tests)} fail on the old code ({how})"
    passing_before = [t for t in tests if known.get(t) is TestOutcome.PASSED]
    if passing_before:
        note += f"; passing on the old code too: {_listed(passing_before)}"
    if len(proven) < len(fail_before):
        note += f"; not passing on the new code: {_listed([t for t in fail_before if t not in proven])}"
    return note


# --- words for the implementer and for people -------------------------------------------------------------


def feedback(comparison: Comparison, after: ValidationRun, limit: int = 8000) -> str:
    """What the implementer's next attempt needs: what this change broke, with the output of those
    tests, and the base branch's own failures labelled so nobody chases them. At most `limit` chars."""
    sections = [f"Validation {comparison.reason}"]
    sections += _id_section("Tests that fail because of this change", comparison.new_failures)
    sections += _id_section(
        "Tests that passed on the base branch and now are skipped or did not run (deleted, renamed or not "
        "collected) — restore them",
        comparison.vanished,
    )
    sections += _id_section("Tests the plan names that do not pass yet", comparison.named_missing)
    sections += _id_section(f"Tests {PRE_EXISTING_LABEL}", comparison.pre_existing)
    head = "\n\n".join(sections)
    room = limit - len(head) - 2
    excerpts = _excerpts(comparison, after, room)
    text = f"{head}\n\n{excerpts}" if excerpts else head
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _id_section(title: str, ids: Sequence[str]) -> list[str]:
    if not ids:
        return []
    lines = [f"- {t}" for t in ids[:SHOWN]]
    lines += [f"- … and {len(ids) - SHOWN} more"] if len(ids) > SHOWN else []
    return [f"{title}:\n" + "\n".join(lines)]


def _excerpts(comparison: Comparison, after: ValidationRun, room: int) -> str:
    """The output of each new failure (or the failing command's tail), sharing `room` characters."""
    failing = [c for c in [*after.setup, *after.checks] if c.status is not CheckStatus.PASSED]
    if room <= 0 or not failing:
        return ""
    parts = []
    for test_id in comparison.new_failures:
        found = next((e for c in failing if (e := failure_excerpt(c.output, test_id))), "")
        parts += [found] if found else []
    if not parts:
        parts = [f"$ {c.command}\n{c.output.strip()}" for c in failing if c.output.strip()]
    if not parts:
        return ""
    share = max(room // len(parts), 200)
    body = "\n\n".join(_tail(p, share) for p in parts)
    return ("Output:\n" + body)[:room]


def _tail(text: str, limit: int) -> str:
    """The end of a block: the assertion and the summary are at the end."""
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]


def describe(run: ValidationRun) -> str:
    """One markdown line per set-up step and command: status, exit code, time, the runner's summary."""
    lines = [f"- setup {_check_line(s)}" for s in run.setup]
    lines += [f"- {_check_line(c)}" for c in run.checks]
    if not run.checks:
        lines.append("- no test command ran")
    where = " · ".join(x for x in (run.commit[:7] and f"`{run.commit[:7]}`", run.environment) if x)
    return (f"{where}\n" if where else "") + "\n".join(lines)


def _check_line(check: CheckRun) -> str:
    code = "—" if check.exit_code is None else str(check.exit_code)
    line = f"{_code(check.command)} — **{STATUS_WORDS[check.status]}** (exit {code}, {check.duration_s:.1f}s)"
    detail = check.summary if check.status in RAN else (check.reason or check.summary)
    return f"{line}: {_one_line(detail)}" if detail else line


def render_markdown(
    base: ValidationRun | None, after: ValidationRun, comparison: Comparison, proof: FixProof | None
) -> str:
    """The validation section of a review or status: each command before and after, the comparison, the
    fix proof's headline."""
    verdict = "passed" if comparison.passed else STATUS_WORDS[comparison.status]
    if not comparison.passed and comparison.status is CheckStatus.PASSED:
        verdict = "failed"
    lines = [f"**Validation: {verdict}** — {_one_line(comparison.reason)}", ""]
    lines += ["| | Command | Status | Exit | Time | Summary |", "| --- | --- | --- | --- | --- | --- |"]
    for label, run in (("base", base), ("change", after)):
        lines += [_row(label, check) for check in ([*run.setup, *run.checks] if run else [])]
    if base is None:
        lines.append("| base | — | not run | | | |")
    lines.append("")
    lines += _list_line("New failures", comparison.new_failures)
    lines += _list_line("No longer passing or running", comparison.vanished)
    lines += _list_line("Named in the plan, not passing", comparison.named_missing)
    lines += _list_line("Already failing on the base branch", comparison.pre_existing)
    lines += _list_line("Fixed", comparison.fixed)
    if proof is not None:
        lines.append(f"**Fix proof:** {_one_line(proof.headline())}")
    return "\n".join(lines).rstrip() + "\n"


def _row(label: str, check: CheckRun) -> str:
    code = "" if check.exit_code is None else str(check.exit_code)
    detail = check.summary if check.status in RAN else (check.reason or check.summary)
    cells = [
        label,
        _code(check.command),
        STATUS_WORDS[check.status],
        code,
        f"{check.duration_s:.1f}s",
        detail,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _list_line(title: str, ids: Sequence[str]) -> list[str]:
    if not ids:
        return []
    shown = ", ".join(_code(t) for t in ids[:SHOWN])
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return [f"- **{title}:** {shown}{more}"]


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _one_line(text: str) -> str:
    return " ".join(text.split())
