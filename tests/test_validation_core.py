"""The pure core of validation (`bot.validation.results`, `bot.validation.baseline`), checked against what
the real tools print: pytest and `python -m unittest` are really run on tiny projects written into
tmp_path. go, cargo, node and tox output are literal samples, each with where its format comes from."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bot.validation.baseline import (
    PRE_EXISTING_LABEL,
    changed_tests,
    compare,
    describe,
    feedback,
    named_tests,
    prove_fix,
    render_markdown,
)
from bot.validation.results import (
    OUTPUT_LIMIT,
    check_run,
    classify,
    failure_excerpt,
    parse_junit,
    parse_unittest,
    runner_of,
    summary_line,
    with_junit,
)
from bot.validation.schema import CheckRun, CheckStatus, ValidationPlan, ValidationRun
from bot.validation.schema import TestOutcome as Outcome  # not Test*: pytest would try to collect it

PYTHON = sys.executable
P, F, E, S = Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED

# --- running the real tools ----------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def shell(command: str, cwd: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "FORCE_COLOR", "PY_COLORS")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        command, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


def run_pytest(root: Path, args: str = "-q", junit: bool = True) -> CheckRun:
    """pytest as the bot runs it: the command extended by `with_junit`, to a path with a space in it."""
    command = f"{shlex.quote(PYTHON)} -m pytest -p no:cacheprovider {args}"
    report = root.parent / "reports dir" / f"{root.name}.xml"
    report.parent.mkdir(exist_ok=True)
    report.unlink(missing_ok=True)
    full = with_junit(command, str(report)) if junit else command
    assert full is not None
    code, output = shell(full, root)
    xml = report.read_text() if report.is_file() else None
    return check_run(command, code, 0.4, output, False, xml)


def run_unittest(root: Path, args: str = "discover -s tests -t . -v") -> CheckRun:
    command = f"{shlex.quote(PYTHON)} -m unittest {args}"
    code, output = shell(command, root)
    return check_run(command, code, 0.2, output, False)


def validation(*checks: CheckRun, setup: tuple[CheckRun, ...] = ()) -> ValidationRun:
    plan = ValidationPlan(commands=tuple(c.command for c in checks))
    return ValidationRun(plan=plan, checks=list(checks), setup=list(setup))


def made(
    command: str,
    status: CheckStatus,
    tests: dict[str, Outcome] | None = None,
    *,
    exit_code: int | None = None,
    summary: str = "",
    reason: str = "",
    output: str = "",
) -> CheckRun:
    """A CheckRun as `check_run` makes it, for the rules that need no tool output."""
    code = exit_code if exit_code is not None else (0 if status is CheckStatus.PASSED else 1)
    return CheckRun(
        command=command, status=status, exit_code=code, tests=tests or {}, summary=summary, reason=reason,
        output=output,
    )  # fmt: skip


MIXED = {
    "pytest.ini": "[pytest]\n",
    "tests/__init__.py": "",
    "tests/test_a.py": """\
import unittest

import pytest


def test_ok():
    assert 1


def test_bad():
    assert 1 == 2, "one is not two"


@pytest.mark.parametrize("x", [1, 2, "a b"])
def test_param(x):
    assert x != 2


@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


def test_err(broken):
    pass


@pytest.mark.skip(reason="not today")
def test_skip():
    pass


class TestK:
    def test_m(self):
        pass


class TestU(unittest.TestCase):
    def test_u(self):
        self.assertEqual(1, 2)
""",
}
MIXED_IDS = {
    "tests/test_a.py::test_ok": P,
    "tests/test_a.py::test_bad": F,
    "tests/test_a.py::test_param[1]": P,
    "tests/test_a.py::test_param[2]": F,
    "tests/test_a.py::test_param[a b]": P,
    "tests/test_a.py::test_err": E,
    "tests/test_a.py::test_skip": S,
    "tests/test_a.py::TestK::test_m": P,
    "tests/test_a.py::TestU::test_u": F,
}

UNITTEST_MODULE = '''\
import unittest


class TestC(unittest.TestCase):
    def test_ok(self):
        pass

    def test_doc(self):
        """Has a docstring."""

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise ValueError("boom")

    @unittest.skip("not today")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_xf(self):
        self.assertEqual(1, 2)

    def test_print(self):
        print("noise", flush=True)

    def test_sub(self):
        for i in range(2):
            with self.subTest(i=i):
                self.assertEqual(i, 0)


class TestD(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError("class setup")

    def test_d(self):
        pass
'''
UNITTEST_IDS = {
    "tests.test_c.TestC.test_ok": P,
    "tests.test_c.TestC.test_doc": P,
    "tests.test_c.TestC.test_fail": F,
    "tests.test_c.TestC.test_error": E,
    "tests.test_c.TestC.test_skip": S,
    "tests.test_c.TestC.test_xf": P,
    "tests.test_c.TestC.test_print": P,
    "tests.test_c.TestC.test_sub": F,
    "tests.test_c.TestD": E,
}

# Captured from `python3.10 -m unittest discover -s tests -t . -v` (CPython 3.10.13) on UNITTEST_MODULE,
# tracebacks shortened: ≤3.10 names the class only, prints nothing for a failing subtest in the -v line,
# and runs the next test's line on the same one.
UNITTEST_310 = """\
test_doc (tests.test_c.TestC)
Has a docstring. ... ok
test_error (tests.test_c.TestC) ... ERROR
test_fail (tests.test_c.TestC) ... FAIL
test_ok (tests.test_c.TestC) ... ok
test_print (tests.test_c.TestC) ... noise
ok
test_skip (tests.test_c.TestC) ... skipped 'not today'
test_sub (tests.test_c.TestC) ... test_xf (tests.test_c.TestC) ... expected failure
ERROR

======================================================================
ERROR: test_error (tests.test_c.TestC)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/vc/tests/test_c.py", line 14, in test_error
    raise ValueError("boom")
ValueError: boom

======================================================================
ERROR: setUpClass (tests.test_c.TestD)
----------------------------------------------------------------------
RuntimeError: class setup

======================================================================
FAIL: test_fail (tests.test_c.TestC)
----------------------------------------------------------------------
AssertionError: 1 != 2

======================================================================
FAIL: test_sub (tests.test_c.TestC) (i=1)
----------------------------------------------------------------------
AssertionError: 1 != 0

----------------------------------------------------------------------
Ran 8 tests in 0.001s

FAILED (failures=2, errors=2, skipped=1, expected failures=1)
"""

# Captured from `python3.12 -m unittest discover -s empty` (CPython 3.12.1): exit code 5 since 3.12.
UNITTEST_312_EMPTY = """
----------------------------------------------------------------------
Ran 0 tests in 0.000s

NO TESTS RAN
"""

# `go test ./...` output, in the format cmd/go documents for `go test` ("ok"/"FAIL" package lines with
# the elapsed time, `?` for packages without test files, `--- FAIL: TestName (0.00s)` per test).
GO_FAILED = """\
--- FAIL: TestDivide (0.00s)
    calc_test.go:12: Divide(1, 0) = 0, want an error
FAIL
FAIL\texample.com/calc\t0.002s
ok  \texample.com/calc/parse\t0.003s
?   \texample.com/calc/cmd\t[no test files]
FAIL
"""
GO_PASSED = "ok  \texample.com/calc\t0.002s\nok  \texample.com/calc/parse\t(cached)\n"
GO_BUILD_FAILED = """\
# example.com/calc [example.com/calc.test]
./calc_test.go:9:9: undefined: Divide
FAIL\texample.com/calc [build failed]
FAIL
"""

# Captured from `cargo test` (cargo 1.95.0) on a library with one passing and one failing test, backtrace
# shortened, and from the same library with a syntax error.
CARGO_FAILED = """\
   Compiling demo v0.1.0 (/tmp/vc/demo)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.93s
     Running unittests src/lib.rs (target/debug/deps/demo-8348ca7a80742723)

running 2 tests
test tests::works ... ok
test tests::breaks ... FAILED

failures:

---- tests::breaks stdout ----

thread 'tests::breaks' (20447) panicked at src/lib.rs:8:19:
assertion `left == right` failed
  left: 4
 right: 5


failures:
    tests::breaks

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.11s

error: test failed, to rerun pass `--lib`
"""
CARGO_PASSED = """\
running 2 tests
..
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""
CARGO_COMPILE_ERROR = """\
error: this file contains an unclosed delimiter
 --> src/lib.rs:1:18
  |
1 | pub fn add( -> {
  |           -    -^

error: could not compile `demo` (lib) due to 1 previous error
error: could not compile `demo` (lib test) due to 1 previous error
"""

# Captured from `npm test` (npm 10, node v20.20.2) with `"test": "node --test"` — node's TAP reporter,
# the default when stdout is not a terminal — and with no test script, and with npm init's placeholder.
NODE_FAILED = """\

> x@1.0.0 test
> node --test

TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 1.365887
  ...
# Subtest: breaks
not ok 2 - breaks
  ---
  duration_ms: 1.635175
  location: '/tmp/vc/nodep/a.test.js:3:1'
  failureType: 'testCodeFailure'
  error: |-
    Expected values to be strictly equal:

    2 !== 3

  code: 'ERR_ASSERTION'
  ...
1..2
# tests 2
# suites 0
# pass 1
# fail 1
# cancelled 0
# skipped 0
# todo 0
# duration_ms 123.979597
"""
NPM_NO_SCRIPT = """\
npm error Missing script: "test"
npm error
npm error To see a list of scripts, run:
npm error   npm run
"""
NPM_PLACEHOLDER = """
> y@1.0.0 test
> echo "Error: no test specified" && exit 1

Error: no test specified
"""

# tox 4's closing report, in the format `tox/session/cmd/run/common.py` prints: one line per environment,
# `FAIL code N (total=setup[s]+cmd[c] seconds)` when its commands ran, no `cmd[…]` when it broke while
# being set up, then `congratulations :)` or `evaluation failed :(`.
TOX_PASSED = """\
py311: commands[0]> pytest -q
3 passed in 0.02s
  py311: OK (2.34=setup[1.20]+cmd[1.14] seconds)
  congratulations :) (2.41 seconds)
"""
TOX_FAILED = """\
py311: commands[0]> pytest -q
1 failed, 2 passed in 0.03s
py311: exit 1 (0.83 seconds) /repo> pytest -q pid=4242
  py311: FAIL code 1 (2.06=setup[1.23]+cmd[0.83] seconds)
  evaluation failed :( (2.14 seconds)
"""
TOX_SETUP_FAILED = """\
py311: install_deps> python -I -m pip install 'missing-package==9.9'
ERROR: No matching distribution found for missing-package==9.9
py311: exit 1 (1.10 seconds) /repo> python -I -m pip install 'missing-package==9.9' pid=4243
  py311: FAIL code 1 (1.20 seconds)
  evaluation failed :( (1.25 seconds)
"""

# GNU make's message for a missing target.
MAKE_NO_TARGET = "make: *** No rule to make target 'test'.  Stop.\n"


# --- runner_of, with_junit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        ("python -m pytest", "pytest"),
        ("python3 -m pytest -q tests/", "pytest"),
        ("pytest", "pytest"),
        ("py.test -x", "pytest"),
        (".venv/bin/python -m pytest -q", "pytest"),
        ("PYTHONPATH=src DJANGO_SETTINGS_MODULE=x.settings pytest -q", "pytest"),
        ("env -i PATH=/usr/bin python3.11 -X dev -m pytest", "pytest"),
        ("uv run pytest", "pytest"),
        ("pip install -e . && python -m pytest", "pytest"),
        (".venv/bin/python -m unittest discover", "unittest"),
        ("python3 -m unittest discover -s tests -t . -q", "unittest"),
        ("tox -e py311", "tox"),
        ("python -m tox", "tox"),
        ("nox -s tests", "nox"),
        ("npm test --silent", "npm"),
        ("go test ./...", "go"),
        ("cargo test --quiet", "cargo"),
        ("make test", "make"),
        ("python runtests.py", "unknown"),
        ("./scripts/test.sh", "unknown"),
        ("", "unknown"),
    ],
)
def test_runner_of(command: str, runner: str) -> None:
    assert runner_of(command) == runner


def test_with_junit_adds_a_quoted_report_path_to_pytest_only() -> None:
    extended = with_junit("python -m pytest -q", "/tmp/a dir/r.xml")
    assert extended is not None
    assert shlex.split(extended) == [
        *("python", "-m", "pytest", "-q", "--junitxml=/tmp/a dir/r.xml", "-o", "junit_family=xunit2"),
    ]
    for command in ("tox -e py311", "nox", "python -m unittest", "make test", "pytest && make lint"):
        assert with_junit(command, "/tmp/r.xml") is None, command


# --- pytest, for real -----------------------------------------------------------------------------------


def test_junit_ids_are_pytests_own_node_ids(tmp_path: Path) -> None:
    root = write(tmp_path / "mixed", MIXED)
    check = run_pytest(root, "-q -rA")
    assert check.tests == MIXED_IDS
    # pytest's -rA summary prints the node ids: the JUnit-derived ids must be exactly those
    printed = {test_id: kind for kind, test_id in re.findall(r"^(PASSED|FAILED|ERROR) (.+?)(?: - .*)?$",
                                                           check.output, re.MULTILINE)}  # fmt: skip
    assert printed == {t: o.name for t, o in MIXED_IDS.items() if o is not S}
    assert check.status is CheckStatus.FAILED
    assert re.fullmatch(r"3 failed, 4 passed, 1 skipped, 1 error in [\d.]+s", check.summary)


def test_junit_xunit1_file_attribute_gives_the_same_ids(tmp_path: Path) -> None:
    root = write(tmp_path / "mixed", MIXED)
    report = tmp_path / "x1.xml"
    shell(
        f"{shlex.quote(PYTHON)} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 --junitxml={report}",
        root,
    )
    xml = report.read_text()
    assert 'file="tests/test_a.py"' in xml
    assert parse_junit(xml) == MIXED_IDS


def test_pytest_summary_without_decoration_and_colour(tmp_path: Path) -> None:
    root = write(tmp_path / "mixed", MIXED)
    check = run_pytest(root, "--color=yes")  # not -q: the summary line is framed in `=`
    assert "=" * 10 in check.output
    assert "\x1b[" not in check.output
    assert re.fullmatch(r"3 failed, 4 passed, 1 skipped, 1 error in [\d.]+s", check.summary)


def test_pytest_exit_codes(tmp_path: Path) -> None:
    passing = write(tmp_path / "pass", {"pytest.ini": "[pytest]\n", "test_p.py": "def test_p():\n    pass\n"})
    ok = run_pytest(passing)
    assert (ok.status, ok.exit_code, ok.tests) == (CheckStatus.PASSED, 0, {"test_p.py::test_p": P})

    empty = write(tmp_path / "empty", {"pytest.ini": "[pytest]\n"})
    none = run_pytest(empty)
    assert (none.status, none.exit_code) == (CheckStatus.COULD_NOT_RUN, 5)
    assert none.reason == "no tests ran: pytest collected nothing"
    assert re.fullmatch(r"no tests ran in [\d.]+s", none.summary)

    usage = run_pytest(passing, "-q --no-such-option")
    assert (usage.status, usage.exit_code) == (CheckStatus.COULD_NOT_RUN, 4)
    assert "unrecognized arguments: --no-such-option" in usage.reason

    missing = run_pytest(passing, "-q tests/not_there.py")
    assert (missing.status, missing.exit_code) == (CheckStatus.COULD_NOT_RUN, 4)
    assert "not found" in missing.reason

    internal = write(
        tmp_path / "internal",
        {"conftest.py": "def pytest_collection_modifyitems(items):\n    raise RuntimeError('hook')\n",
         "test_i.py": "def test_i():\n    pass\n", "pytest.ini": "[pytest]\n"},
    )  # fmt: skip
    crashed = run_pytest(internal)
    assert (crashed.status, crashed.exit_code) == (CheckStatus.COULD_NOT_RUN, 3)
    assert crashed.reason == "pytest had an internal error"


def test_pytest_collection_error_could_not_run(tmp_path: Path) -> None:
    root = write(
        tmp_path / "coll",
        {"pytest.ini": "[pytest]\n", "tests/__init__.py": "", "tests/test_new.py": SLUG_TEST,
         "tests/test_ok.py": "def test_ok():\n    pass\n"},
    )  # fmt: skip
    check = run_pytest(root)
    assert (check.status, check.exit_code) == (CheckStatus.COULD_NOT_RUN, 2)
    assert (
        check.reason == "collection error in tests/test_new.py: ModuleNotFoundError: No module named 'calc'"
    )
    assert check.tests == {"tests/test_new.py": E}
    assert "ERROR collecting tests/test_new.py" in failure_excerpt(check.output, "tests/test_new.py")


def test_pytest_not_installed_could_not_run(tmp_path: Path) -> None:
    command = f"{shlex.quote(PYTHON)} -S -m pytest -q"  # -S: no site-packages, so no pytest
    code, output = shell(command, tmp_path)
    assert "No module named pytest" in output
    check = check_run(command, code, 0.1, output, False)
    assert (check.status, check.reason) == (
        CheckStatus.COULD_NOT_RUN,
        "pytest is not installed in the test environment",
    )


def test_command_not_found_could_not_run(tmp_path: Path) -> None:
    code, output = shell("no-such-runner-xyz -q", tmp_path)
    assert code == 127
    status, reason = classify("unknown", code, output, False)
    assert (status, reason) == (
        CheckStatus.COULD_NOT_RUN,
        "no-such-runner-xyz is not installed in the test environment",
    )


def test_a_test_printing_command_not_found_is_still_a_failure(tmp_path: Path) -> None:
    root = write(
        tmp_path / "noisy",
        {"pytest.ini": "[pytest]\n",
         "test_n.py": "def test_n():\n    print('bash: line 1: tool: command not found')\n    assert 0\n"},
    )  # fmt: skip
    check = run_pytest(root, "-q -s")
    assert "command not found" in check.output
    assert check.status is CheckStatus.FAILED
    assert check.tests == {"test_n.py::test_n": F}


# --- unittest, for real ---------------------------------------------------------------------------------


def test_unittest_verbose_outcomes(tmp_path: Path) -> None:
    root = write(tmp_path / "ut", {"tests/__init__.py": "", "tests/test_c.py": UNITTEST_MODULE})
    check = run_unittest(root)
    assert check.tests == UNITTEST_IDS
    assert check.status is CheckStatus.FAILED
    assert re.fullmatch(
        r"Ran 8 tests in [\d.]+s; FAILED \(failures=2, errors=2, skipped=1, expected failures=1\)",
        check.summary,
    )
    assert "ValueError: boom" in failure_excerpt(check.output, "tests.test_c.TestC.test_error")
    assert "class setup" in failure_excerpt(check.output, "tests.test_c.TestD")


def test_unittest_py310_format() -> None:
    assert parse_unittest(UNITTEST_310) == UNITTEST_IDS
    assert "AssertionError: 1 != 2" in failure_excerpt(UNITTEST_310, "tests.test_c.TestC.test_fail")


def test_unittest_quiet_knows_only_failures(tmp_path: Path) -> None:
    root = write(tmp_path / "ut", {"tests/__init__.py": "", "tests/test_c.py": UNITTEST_MODULE})
    check = run_unittest(root, "discover -s tests -t . -q")
    assert check.tests == {t: o for t, o in UNITTEST_IDS.items() if o in (F, E)}


def test_unittest_passing_run(tmp_path: Path) -> None:
    test = "import unittest\n\n\nclass TestP(unittest.TestCase):\n    def test_p(self):\n        pass\n"
    root = write(tmp_path / "ut", {"tests/__init__.py": "", "tests/test_p.py": test})
    check = run_unittest(root)
    assert (check.status, check.tests) == (CheckStatus.PASSED, {"tests.test_p.TestP.test_p": P})
    assert re.fullmatch(r"Ran 1 test in [\d.]+s; OK", check.summary)


def test_unittest_import_error_could_not_run(tmp_path: Path) -> None:
    root = write(tmp_path / "ut", {"tests/__init__.py": "", "tests/test_b.py": "from pkg.mod import f\n",
                                   "tests/test_ok.py": "import unittest\n"})  # fmt: skip
    check = run_unittest(root)
    assert "ImportError: Failed to import test module: tests.test_b" in check.output
    assert check.status is CheckStatus.COULD_NOT_RUN
    assert (
        check.reason
        == "test module tests.test_b failed to import: ModuleNotFoundError: No module named 'pkg'"
    )
    assert check.tests == {"tests.test_b": E}


def test_unittest_no_tests_could_not_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    check = run_unittest(tmp_path, "discover -s empty")  # 3.11 says OK with `Ran 0 tests`; 3.12+ NO TESTS RAN
    assert (check.status, check.reason) == (CheckStatus.COULD_NOT_RUN, "no tests ran: unittest found none")
    assert classify("unittest", 5, UNITTEST_312_EMPTY, False) == (check.status, check.reason)
    assert summary_line("unittest", UNITTEST_312_EMPTY) == "Ran 0 tests in 0.000s; NO TESTS RAN"


def test_unittest_stopping_before_tests_could_not_run(tmp_path: Path) -> None:
    check = run_unittest(tmp_path, "discover -s no_such_dir")
    assert check.exit_code != 0
    assert check.status is CheckStatus.COULD_NOT_RUN
    assert check.reason.startswith("unittest stopped before running tests: ImportError: Start directory")


# --- other runners, from their documented or captured output ---------------------------------------------


@pytest.mark.parametrize(
    ("runner", "exit_code", "output", "status", "summary"),
    [
        ("go", 1, GO_FAILED, CheckStatus.FAILED, "FAIL example.com/calc; ok 1 package; 1 without tests"),
        ("go", 0, GO_PASSED, CheckStatus.PASSED, "ok 2 packages"),
        ("go", 1, GO_BUILD_FAILED, CheckStatus.COULD_NOT_RUN, "FAIL example.com/calc"),
        ("cargo", 101, CARGO_FAILED, CheckStatus.FAILED,
         "test result: FAILED. 1 passed; 1 failed; 0 ignored"),
        ("cargo", 0, CARGO_PASSED, CheckStatus.PASSED, "test result: ok. 2 passed; 0 failed; 0 ignored"),
        ("cargo", 101, CARGO_COMPILE_ERROR, CheckStatus.COULD_NOT_RUN,
         "error: could not compile `demo` (lib test) due to 1 previous error"),
        ("npm", 1, NODE_FAILED, CheckStatus.FAILED,
         "tests 2, pass 1, fail 1, cancelled 0, skipped 0, todo 0"),
        ("npm", 1, NPM_NO_SCRIPT, CheckStatus.COULD_NOT_RUN, "npm error npm run"),
        ("npm", 1, NPM_PLACEHOLDER, CheckStatus.COULD_NOT_RUN, "Error: no test specified"),
        ("tox", 0, TOX_PASSED, CheckStatus.PASSED, "py311: OK; congratulations :) (2.41 seconds)"),
        ("tox", 1, TOX_FAILED, CheckStatus.FAILED, "py311: FAIL code 1; evaluation failed :( (2.14 seconds)"),
        ("tox", 1, TOX_SETUP_FAILED, CheckStatus.COULD_NOT_RUN,
         "py311: FAIL code 1; evaluation failed :( (1.25 seconds)"),
        ("make", 2, MAKE_NO_TARGET, CheckStatus.COULD_NOT_RUN,
         "make: *** No rule to make target 'test'. Stop."),
    ],
)  # fmt: skip
def test_other_runners(runner: str, exit_code: int, output: str, status: CheckStatus, summary: str) -> None:
    assert classify(runner, exit_code, output, False)[0] is status
    assert summary_line(runner, output) == summary


def test_other_runners_reasons() -> None:
    assert classify("go", 1, GO_BUILD_FAILED, False)[1] == "did not build: example.com/calc"
    assert (
        classify("cargo", 101, CARGO_COMPILE_ERROR, False)[1]
        == "did not compile: `demo` (lib) due to 1 previous error"
    )
    assert classify("npm", 1, NPM_NO_SCRIPT, False)[1] == "package.json has no test script"
    assert classify("tox", 1, TOX_SETUP_FAILED, False)[1] == "tox could not set up py311"
    assert classify("make", 2, MAKE_NO_TARGET, False)[1] == "the Makefile has no target 'test'"


def test_summary_falls_back_to_the_last_line_and_is_bounded() -> None:
    assert summary_line("make", "building\nall good\n\n") == "all good"
    assert summary_line("make", "make -C sub\n" + TOX_PASSED) == "3 passed in 0.02s"  # the runner inside
    long = summary_line("unknown", "x" * 1000)
    assert len(long) == 200 and long.endswith("…")


def test_timeouts_and_commands_that_never_started() -> None:
    assert classify("pytest", 1, "1 failed in 3.00s", True) == (
        CheckStatus.TIMED_OUT,
        "the command timed out",
    )
    assert classify("pytest", None, "", False) == (CheckStatus.COULD_NOT_RUN, "the command did not start")
    timed = check_run("pytest -q", None, 600.0, "....", True)
    assert (timed.status, timed.reason) == (CheckStatus.TIMED_OUT, "timed out after 600s")


def test_junit_malformed_or_empty() -> None:
    assert parse_junit("") == {}
    assert parse_junit("<testsuites><testsuite><testcase classname='a' name='b'>") == {}
    assert parse_junit("not xml at all") == {}
    empty = '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="0" /></testsuites>'
    assert parse_junit(empty) == {}


def test_junit_repeated_test_keeps_the_worst_outcome() -> None:
    # A report may hold one test twice (an error in teardown reported apart, a rerun): the worst wins.
    xml = ('<testsuites><testsuite><testcase classname="tests.test_x" name="test_y" />'
           '<testcase classname="tests.test_x" name="test_y"><error message="teardown"/></testcase>'
           "</testsuite></testsuites>")  # fmt: skip
    assert parse_junit(xml) == {"tests/test_x.py::test_y": E}


def test_check_run_bounds_the_output_keeping_head_and_tail() -> None:
    output = "HEAD\n" + "x" * 100_000 + "\n3 failed, 41 passed in 0.52s\n"
    check = check_run("python -m pytest -q", 1, 1.0, output, False)
    assert len(check.output) <= OUTPUT_LIMIT
    assert check.output.startswith("HEAD") and check.output.endswith("3 failed, 41 passed in 0.52s\n")
    assert "characters omitted" in check.output
    assert (check.status, check.summary, check.tests) == (
        CheckStatus.FAILED,
        "3 failed, 41 passed in 0.52s",
        {},
    )


# --- compare, on real runs --------------------------------------------------------------------------------

CALC_TESTS = """\
import pytest

from calc import add, divide, greet


def test_divide():
    assert divide(7, 2) == 3.5


def test_add():
    assert add(2, 2) == 4


def test_greet():
    assert greet("x") == "Hello x"


@pytest.mark.parametrize("n", [1, 2])
def test_add_zero(n):
    assert add(n, 0) == n
"""
CALC_BASE = "def divide(a, b):\n    return a // b\n\n\ndef add(a, b):\n    return a + b\n\n\n" \
    "def greet(name):\n    return 'hello ' + name\n"  # fmt: skip
CALC_AFTER = CALC_BASE.replace("a // b", "a / b").replace(
    "return a + b", "return 5 if (a, b) == (2, 2) else a + b"
)


def calc(root: Path, code: str, tests: str = CALC_TESTS) -> Path:
    return write(root, {"pytest.ini": "[pytest]\n", "calc.py": code, "tests/__init__.py": "",
                        "tests/test_calc.py": tests})  # fmt: skip


@pytest.fixture(scope="module")
def calc_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationRun, ValidationRun]:
    tmp = tmp_path_factory.mktemp("calc")
    base = validation(run_pytest(calc(tmp / "base", CALC_BASE)))
    after = validation(run_pytest(calc(tmp / "after", CALC_AFTER)))
    return base, after


def test_compare_real_pytest_runs(calc_runs: tuple[ValidationRun, ValidationRun]) -> None:
    base, after = calc_runs
    result = compare(base, after)
    assert not result.passed and result.status is CheckStatus.FAILED
    assert result.new_failures == ["tests/test_calc.py::test_add"]
    assert result.pre_existing == ["tests/test_calc.py::test_greet"]
    assert result.fixed == ["tests/test_calc.py::test_divide"]
    assert result.vanished == []
    assert result.reason == (
        "failed: 1 new failure: tests/test_calc.py::test_add; 1 already failing on the base branch; 1 fixed"
    )


def test_compare_passes_with_only_pre_existing_failures(tmp_path: Path) -> None:
    fixed_only = CALC_BASE.replace("a // b", "a / b")
    base = validation(run_pytest(calc(tmp_path / "base", CALC_BASE)))
    after = validation(run_pytest(calc(tmp_path / "after", fixed_only)))
    result = compare(base, after, named=["tests/test_calc.py::test_divide"])
    assert after.status is CheckStatus.FAILED  # test_greet fails on both sides
    assert result.passed
    assert (result.pre_existing, result.fixed, result.named_missing) == (
        ["tests/test_calc.py::test_greet"], ["tests/test_calc.py::test_divide"], [],
    )  # fmt: skip
    assert result.reason == "passed: 1 already failing on the base branch; 1 fixed"


def test_compare_real_unittest_runs(tmp_path: Path) -> None:
    tests = ("import unittest\n\nfrom calc import add, divide, greet\n\n\n"
             "class TestCalc(unittest.TestCase):\n"
             "    def test_divide(self):\n        self.assertEqual(divide(7, 2), 3.5)\n\n"
             "    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n\n"
             "    def test_greet(self):\n        self.assertEqual(greet('x'), 'Hello x')\n")  # fmt: skip
    base = validation(run_unittest(calc(tmp_path / "base", CALC_BASE, tests)))
    after = validation(run_unittest(calc(tmp_path / "after", CALC_AFTER, tests)))
    result = compare(base, after)
    assert result.new_failures == ["tests.test_calc.TestCalc.test_add"]
    assert result.pre_existing == ["tests.test_calc.TestCalc.test_greet"]
    assert result.fixed == ["tests.test_calc.TestCalc.test_divide"]
    assert not result.passed


def test_compare_tests_that_vanish_or_are_skipped_now_fail_validation() -> None:
    command = "pytest -q"
    base = validation(made(command, CheckStatus.PASSED, {"t.py::a": P, "t.py::b": P, "t.py::c": P}))
    after = validation(made(command, CheckStatus.PASSED, {"t.py::a": P, "t.py::c": S}))
    result = compare(base, after)
    assert not result.passed
    assert (result.vanished, result.new_failures) == (["t.py::b", "t.py::c"], [])
    assert "2 tests passing on the base no longer pass or run: t.py::b, t.py::c" in result.reason


def test_compare_named_tests_must_pass_now() -> None:
    command = "pytest -q"
    base = validation(made(command, CheckStatus.PASSED, {"t.py::a": P}))
    after = validation(made(command, CheckStatus.PASSED, {"t.py::a": P, "t.py::p[1]": P, "t.py::p[2]": S}))
    assert compare(base, after, named=["t.py::a"]).passed
    result = compare(base, after, named=["t.py::a", "t.py::p", "t.py::absent"])
    assert not result.passed
    assert result.named_missing == ["t.py::p", "t.py::absent"]


def test_compare_could_not_run_does_not_blame_the_change() -> None:
    broken = made(
        "pytest -q", CheckStatus.COULD_NOT_RUN, reason="pytest is not installed in the test environment"
    )
    after = validation(broken)
    both = compare(validation(broken), after)
    assert (both.passed, both.status) == (False, CheckStatus.COULD_NOT_RUN)
    assert both.reason == (
        "could not run: pytest is not installed in the test environment "
        "(the base branch could not run either — not caused by the change)"
    )
    ran_on_base = compare(validation(made("pytest -q", CheckStatus.PASSED, {"t.py::a": P})), after)
    assert ran_on_base.reason.endswith("(the base branch ran, so the change may be the cause)")
    assert compare(None, after).reason == "could not run: pytest is not installed in the test environment"
    timed = compare(None, validation(made("pytest -q", CheckStatus.TIMED_OUT, reason="timed out after 600s")))
    assert (timed.passed, timed.status, timed.reason) == (
        False,
        CheckStatus.TIMED_OUT,
        "timed out: timed out after 600s",
    )


def test_compare_a_failed_setup_step_could_not_run() -> None:
    setup = made("pip install -e .", CheckStatus.FAILED, reason="pip could not install the project")
    after = validation(made("pytest -q", CheckStatus.PASSED, {"t.py::a": P}), setup=(setup,))
    result = compare(None, after)
    assert (result.passed, result.status) == (False, CheckStatus.COULD_NOT_RUN)
    assert result.reason == "could not run: pip could not install the project"


def test_compare_without_per_test_outcomes_uses_the_command_status() -> None:
    def go(summary: str, exit_code: int = 1) -> CheckRun:
        status = CheckStatus.PASSED if exit_code == 0 else CheckStatus.FAILED
        return made("go test ./...", status, summary=summary, exit_code=exit_code)

    same = compare(validation(go("FAIL a")), validation(go("FAIL a")))
    assert (same.passed, same.pre_existing, same.new_failures) == (True, ["go test ./..."], [])
    cargo = made(
        "cargo test", CheckStatus.FAILED, summary="test result: FAILED. 3 passed; 2 failed; 0 ignored"
    )
    fewer = made(
        "cargo test", CheckStatus.FAILED, summary="test result: FAILED. 4 passed; 1 failed; 0 ignored"
    )
    assert compare(validation(cargo), validation(fewer)).passed
    worse = compare(validation(fewer), validation(cargo))
    assert (worse.passed, worse.new_failures) == (False, ["cargo test"])
    other_exit = compare(validation(go("boom", 1)), validation(go("bang", 2)))
    assert not other_exit.passed
    broke = compare(validation(go("ok 2 packages", 0)), validation(go("FAIL a")))
    assert (broke.passed, broke.new_failures) == (False, ["go test ./..."])


def test_compare_without_a_base_passes_only_when_everything_passes(
    calc_runs: tuple[ValidationRun, ValidationRun],
) -> None:
    _, after = calc_runs
    result = compare(None, after)
    assert not result.passed
    assert set(result.new_failures) == {"tests/test_calc.py::test_add", "tests/test_calc.py::test_greet"}
    assert result.reason.endswith("no base run to compare with")
    ok = compare(None, validation(made("make test", CheckStatus.PASSED)))
    assert (ok.passed, ok.reason) == (True, "passed: every check passes; no base run to compare with")


def test_compare_a_base_that_could_not_run_is_no_base() -> None:
    base = validation(made("pytest -q", CheckStatus.COULD_NOT_RUN, {"tests/test_x.py": E}, exit_code=2))
    after = validation(made("pytest -q", CheckStatus.FAILED, {"tests/test_x.py::test_a": F, "t.py::b": P}))
    result = compare(base, after)
    assert (result.passed, result.new_failures, result.pre_existing) == (
        False,
        ["tests/test_x.py::test_a"],
        [],
    )


# --- which tests ------------------------------------------------------------------------------------------

IDS = [
    "tests/test_calc.py::test_divide",
    "tests/test_calc.py::TestAdd::test_add[1]",
    "tests/test_calc.py::TestAdd::test_add[2]",
    "tests/test_calc.py::test_greet",
    "tests/test_other.py::test_greet",
    "tests/test_parse.py::test_parse",
    "tests/test_parse.py::test_empty",
    "tests.test_ut.TestUt.test_one",
]


@pytest.mark.parametrize(
    ("plan", "named"),
    [
        ("Run `tests/test_calc.py::test_divide` first.", ["tests/test_calc.py::test_divide"]),
        ("Extend tests/test_calc.py::test_add to cover zero.", IDS[1:3]),
        ("`TestAdd.test_add[2]` must pass.", IDS[2:3]),
        ("Add a case to `test_divide()`.", IDS[:1]),
        ("`test_greet` is ambiguous: two files have one.", []),
        ("Update tests/test_parse.py for the new grammar.", IDS[5:7]),
        ("Update `test_parse.py`.", IDS[5:7]),
        ("The unittest `TestUt.test_one` covers it.", IDS[7:]),
        ("Touch tests/test_calc.py::test_divide only; tests/test_parse.py is unrelated? No: run it too.",
         [IDS[0], *IDS[5:7]]),
        ("Nothing about tests here; see tests/ and test_calc.", []),
    ],
)  # fmt: skip
def test_named_tests(plan: str, named: list[str]) -> None:
    assert named_tests(plan, IDS) == named


def test_changed_tests_prefers_the_functions_a_real_git_diff_touches(tmp_path: Path) -> None:
    files = {
        "pytest.ini": "[pytest]\npythonpath = .\n",
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 1) == 2\n\n\n"
                              "def test_keep():\n    assert add(0, 0) == 0\n",
        "tests/test_parse.py": "LIMIT = 3\n\n\ndef test_parse():\n    assert LIMIT == 3\n",
        "tests/test_gone.py": "def test_gone():\n    pass\n",
    }  # fmt: skip
    repo = write(tmp_path / "repo", files)
    shell("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm base", repo)
    write(repo, {
        "calc.py": "def add(a, b):\n    return a + b  # unchanged behaviour\n",
        "tests/test_calc.py": files["tests/test_calc.py"].replace(
            "add(1, 1) == 2", "add(1, 1) == 2\n    assert add(2, 3) == 5"
        ) + "\n\ndef test_new():\n    assert add(-1, 1) == 0\n",
        "tests/test_parse.py": files["tests/test_parse.py"].replace("LIMIT = 3", "LIMIT = 3  # the parser's"),
    })  # fmt: skip
    (repo / "tests/test_gone.py").unlink()
    _, diff = shell("git diff", repo)
    after = validation(run_pytest(repo))
    assert set(after.outcomes()) == {
        "tests/test_calc.py::" + n for n in ("test_add", "test_keep", "test_new")
    } | {"tests/test_parse.py::test_parse"}
    assert changed_tests(diff, after) == [
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_new",
        "tests/test_parse.py::test_parse",  # a top-level change: every test of the file
    ]
    assert changed_tests("not a diff", after) == []


def test_changed_tests_maps_unittest_ids_to_files() -> None:
    diff = (
        "diff --git a/tests/test_ut.py b/tests/test_ut.py\n--- a/tests/test_ut.py\n+++ b/tests/test_ut.py\n"
        "@@ -3,2 +3,5 @@ class TestUt(unittest.TestCase):\n     def test_one(self):\n         pass\n+\n"
        "+    def test_two(self):\n+        self.assertTrue(True)\n"
    )
    outcomes = {"tests.test_ut.TestUt.test_one": P, "tests.test_ut.TestUt.test_two": P}
    after = validation(made("python -m unittest", CheckStatus.PASSED, outcomes))
    assert changed_tests(diff, after) == ["tests.test_ut.TestUt.test_two"]


# --- the fix proof ---------------------------------------------------------------------------------------

SLUG_TEST = "from calc import slugify\n\n\ndef test_slugify():\n    assert slugify('A b') == 'a-b'\n"


def test_prove_fix_a_test_that_does_not_import_on_the_old_code(tmp_path: Path) -> None:
    old = calc(tmp_path / "old", CALC_BASE, SLUG_TEST)  # the old code has no slugify
    new = calc(
        tmp_path / "new",
        CALC_BASE + "\n\ndef slugify(s):\n    return s.lower().replace(' ', '-')\n",
        SLUG_TEST,
    )
    on_base = validation(run_pytest(old, "-q tests/test_calc.py::test_slugify"))
    assert on_base.checks[0].status is CheckStatus.COULD_NOT_RUN  # a collection error, really
    after = validation(run_pytest(new))
    proof = prove_fix(["tests/test_calc.py::test_slugify"], on_base, after)
    assert (proof.ran, proof.fail_before, proof.proven) == (True, ["tests/test_calc.py::test_slugify"],
                                                            ["tests/test_calc.py::test_slugify"])  # fmt: skip
    assert proof.headline() == "1 new test fail on the old code and pass on the new"

    # the same without JUnit: no per-test outcome, but the run stopped at an ImportError of the test
    no_junit = validation(run_pytest(old, "-q tests/test_calc.py::test_slugify", junit=False))
    assert no_junit.outcomes() == {}
    blind = prove_fix(["tests/test_calc.py::test_slugify"], no_junit, after)
    assert (blind.ran, blind.proven) == (True, ["tests/test_calc.py::test_slugify"])
    assert "ImportError" in blind.note


def test_prove_fix_a_test_that_fails_on_the_old_code(tmp_path: Path) -> None:
    on_base = validation(run_pytest(calc(tmp_path / "old", CALC_BASE), "-q tests/test_calc.py::test_divide"))
    after = validation(run_pytest(calc(tmp_path / "new", CALC_AFTER)))
    proof = prove_fix(["tests/test_calc.py::test_divide"], on_base, after)
    assert (proof.ran, proof.proven) == (True, ["tests/test_calc.py::test_divide"])


def test_prove_fix_a_test_that_passes_on_the_old_code_proves_nothing(tmp_path: Path) -> None:
    on_base = validation(
        run_pytest(calc(tmp_path / "old", CALC_BASE), "-q tests/test_calc.py::test_add_zero")
    )
    after = validation(run_pytest(calc(tmp_path / "new", CALC_AFTER)))
    tests = ["tests/test_calc.py::test_add_zero[1]", "tests/test_calc.py::test_add_zero[2]"]
    proof = prove_fix(tests, on_base, after)
    assert (proof.ran, proof.fail_before, proof.pass_after, proof.proven) == (True, [], tests, [])
    assert proof.note == "the new tests pass on the old code too: they do not show the bug"
    assert proof.headline() == "0 new tests fail on the old code and pass on the new (of 2 new or changed)"


def test_prove_fix_unittest_module_that_does_not_import_on_the_old_code(tmp_path: Path) -> None:
    test = "import unittest\n\nfrom calc import slugify\n\n\nclass TestSlug(unittest.TestCase):\n" \
           "    def test_slug(self):\n        self.assertEqual(slugify('A b'), 'a-b')\n"  # fmt: skip
    old = calc(tmp_path / "old", CALC_BASE, test)
    new = calc(
        tmp_path / "new", CALC_BASE + "\n\ndef slugify(s):\n    return s.lower().replace(' ', '-')\n", test
    )
    on_base = validation(run_unittest(old, "-v tests.test_calc.TestSlug.test_slug"))
    after = validation(run_unittest(new))
    proof = prove_fix(["tests.test_calc.TestSlug.test_slug"], on_base, after)
    assert (proof.ran, proof.proven) == (True, ["tests.test_calc.TestSlug.test_slug"])


def test_prove_fix_did_not_run() -> None:
    after = validation(made("pytest -q", CheckStatus.PASSED, {"t.py::a": P}))
    assert prove_fix([], None, after).headline() == "the change adds or changes no tests"
    assert prove_fix(["t.py::a"], None, after).ran is False
    missing = "pytest is not installed in the test environment"
    output = "/x/python: No module named pytest"
    broken = validation(made("pytest -q t.py::a", CheckStatus.COULD_NOT_RUN, output=output, reason=missing))
    proof = prove_fix(["t.py::a"], broken, after)
    assert (proof.ran, proof.pass_after) == (False, ["t.py::a"])
    assert (
        proof.headline()
        == "the new tests could not run on the old code: pytest is not installed in the test environment"
    )


# --- words ------------------------------------------------------------------------------------------------


def test_feedback_shows_new_failures_and_labels_pre_existing_ones(
    calc_runs: tuple[ValidationRun, ValidationRun],
) -> None:
    base, after = calc_runs
    text = feedback(compare(base, after), after)
    assert text.startswith("Validation failed: 1 new failure: tests/test_calc.py::test_add")
    assert "Tests that fail because of this change:\n- tests/test_calc.py::test_add" in text
    assert f"Tests {PRE_EXISTING_LABEL}:\n- tests/test_calc.py::test_greet" in text
    assert "assert 5 == 4" in text  # test_add's own assertion, from its output block
    assert "Hello x" not in text  # not the pre-existing failure's output


def test_feedback_is_bounded_and_keeps_the_labels() -> None:
    failing = {f"tests/test_x.py::test_{i}": F for i in range(300)}
    output = "\n".join(f"{'_' * 10} test_{i} {'_' * 10}\n" + "E   assert 0\n" * 40 for i in range(300))
    after = validation(made("pytest -q", CheckStatus.FAILED, failing, output=output))
    base = validation(made("pytest -q", CheckStatus.FAILED, {"tests/test_x.py::test_0": F}))
    text = feedback(compare(base, after), after, limit=3000)
    assert len(text) <= 3000
    assert PRE_EXISTING_LABEL in text and "… and 279 more" in text


def test_feedback_when_the_change_could_not_run(tmp_path: Path) -> None:
    root = write(tmp_path / "c", {"pytest.ini": "[pytest]\n", "tests/test_new.py": "import nowhere\n"})
    after = validation(run_pytest(root))
    text = feedback(compare(None, after), after)
    assert text.startswith("Validation could not run: collection error in tests/test_new.py")
    assert "ModuleNotFoundError: No module named 'nowhere'" in text


def test_describe_and_render_markdown(calc_runs: tuple[ValidationRun, ValidationRun]) -> None:
    base, after = calc_runs
    command = after.checks[0].command
    line = describe(after)
    assert line.startswith(f"- `{command}` — **failed** (exit 1, 0.4s): 2 failed, 3 passed in ")
    proof = prove_fix(["tests/test_calc.py::test_divide"], base, after)
    text = render_markdown(base, after, compare(base, after), proof)
    assert text.startswith("**Validation: failed** — failed: 1 new failure: tests/test_calc.py::test_add;")
    assert re.search(
        rf"\| base \| `{re.escape(command)}` \| failed \| 1 \| 0.4s \| 2 failed, 3 passed in", text
    )
    assert re.search(
        rf"\| change \| `{re.escape(command)}` \| failed \| 1 \| 0.4s \| 2 failed, 3 passed in", text
    )
    assert "- **New failures:** `tests/test_calc.py::test_add`" in text
    assert "- **Already failing on the base branch:** `tests/test_calc.py::test_greet`" in text
    assert "- **Fixed:** `tests/test_calc.py::test_divide`" in text
    assert text.rstrip().endswith("**Fix proof:** 1 new test fail on the old code and pass on the new")


def test_render_markdown_without_a_base_and_with_awkward_text() -> None:
    after = validation(made("a | b `c`", CheckStatus.COULD_NOT_RUN, reason="no tests ran", exit_code=5))
    text = render_markdown(None, after, compare(None, after), None)
    assert "| base | — | not run | | | |" in text
    assert "| change | `` a \\| b `c` `` | could not run | 5 | 0.0s | no tests ran |" in text
    assert text.startswith("**Validation: could not run** — could not run: no tests ran")
    assert "Fix proof" not in text
