"""What a test command's output means: its runner, its own summary, per-test outcomes, and a status.

Pure functions over text. Each rule reads what the real tool prints, so a broken environment is never
reported as a failing change:

- pytest (exit codes are documented in `pytest.ExitCode`): 0 passed, 1 tests failed, 2 interrupted
  (collection errors), 3 internal error, 4 usage error, 5 no tests collected. Only 1 is `failed`.
- unittest: "NO TESTS RAN" (3.12+) or "Ran 0 tests" (older), and a test module that failed to import
  (`unittest.loader._FailedTest`), are `could_not_run`.
- A missing tool (exit 127, "command not found", "No module named pytest") is `could_not_run`.
- go, cargo, npm/node, tox, nox and make are read from their closing lines (see each `_judge_*`).

Per-test ids follow the runner's own naming so they can be compared across runs and matched with what a
plan names: pytest node ids (`tests/test_x.py::TestA::test_b[1]`) from JUnit XML, unittest dotted ids
(`pkg.mod.Class.test_x`) from `-v` output.
"""

from __future__ import annotations

import os
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import PurePosixPath

from bot.validation.schema import CheckRun, CheckStatus, TestOutcome

OUTPUT_LIMIT = 20_000
"""Characters of output kept per command (head and tail)."""
SUMMARY_LIMIT = 200
"""Characters of a runner's summary line."""

Verdict = tuple[CheckStatus, str]

# --- which runner ------------------------------------------------------------------------------------

_PYTHON = re.compile(r"(?:python|pypy)(?:\d+(?:\.\d+)?)?(?:\.exe)?|py")
_MODULES = {"pytest": "pytest", "py.test": "pytest", "unittest": "unittest", "tox": "tox", "nox": "nox"}
_EXECUTABLES = {
    **{"pytest": "pytest", "py.test": "pytest", "tox": "tox", "nox": "nox", "go": "go", "cargo": "cargo"},
    **{"npm": "npm", "yarn": "npm", "pnpm": "npm", "npx": "npm", "node": "npm", "bun": "npm"},
    **{"make": "make", "gmake": "make"},
}
_WRAPPERS = {"uv": 1, "poetry": 1, "pipenv": 1, "pdm": 1, "rye": 1, "hatch": 1, "env": 0, "timeout": 1}
"""Commands that run another command: how many arguments follow them before it (`uv run`, `timeout 60`)."""
_SEPARATORS = frozenset({"&&", "||", ";", "|"})


def runner_of(command: str) -> str:
    """The test runner a command runs — the last one recognised, so `pip install . && pytest` is pytest."""
    found = "unknown"
    for segment in _segments(command):
        runner = _segment_runner(segment)
        if runner != "unknown":
            found = runner
    return found


def _segments(command: str) -> list[list[str]]:
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def _segment_runner(tokens: list[str]) -> str:
    tokens = _strip_prefixes(tokens)
    if not tokens:
        return "unknown"
    name = os.path.basename(tokens[0])
    if _PYTHON.fullmatch(name):
        return _MODULES.get(_python_module(tokens[1:]) or "", "unknown")
    return _EXECUTABLES.get(name, "unknown")


def _strip_prefixes(tokens: list[str]) -> list[str]:
    """Drops `VAR=value` assignments and wrappers such as `env -i`, `uv run`, `timeout 60` (and the
    options right after a wrapper)."""
    i, wrapped = 0, False
    while i < len(tokens):
        token = tokens[i]
        if re.fullmatch(r"[A-Za-z_]\w*=.*", token) or (wrapped and token.startswith("-")):
            i += 1
        elif os.path.basename(token) in _WRAPPERS:
            i, wrapped = i + 1 + _WRAPPERS[os.path.basename(token)], True
        else:
            break
    return tokens[i:]


def _python_module(args: list[str]) -> str | None:
    """The module of `python [options] -m MODULE …`, or None for a script or nothing."""
    i = 0
    while i < len(args):
        if args[i] == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if args[i].startswith("-m") and len(args[i]) > 2:
            return args[i][2:]
        if args[i] in ("-X", "-W", "-c"):
            return None if args[i] == "-c" else _python_module(args[i + 2 :])
        if not args[i].startswith("-"):
            return None
        i += 1
    return None


def with_junit(command: str, path: str) -> str | None:
    """The command writing JUnit XML to `path`, when its runner can; None otherwise (tox, nox, unittest…).

    Only a command whose last segment is pytest is extended: an option appended to `pytest && make lint`
    would reach make, not pytest."""
    segments = _segments(command)
    if not segments or _segment_runner(segments[-1]) != "pytest":
        return None
    return f"{command} --junitxml={shlex.quote(path)} -o junit_family=xunit2"


# --- JUnit XML (pytest) ----------------------------------------------------------------------------------

_SEVERITY = {TestOutcome.PASSED: 0, TestOutcome.SKIPPED: 1, TestOutcome.FAILED: 2, TestOutcome.ERROR: 3}


def parse_junit(xml_text: str) -> dict[str, TestOutcome]:
    """Per-test outcomes from JUnit XML, keyed by pytest node id; {} when the XML is malformed.

    pytest writes `classname` as the node id's path (slashes as dots, `.py` dropped) plus its classes, and
    `name` as the function with its parameters; `file` (xunit1 only) gives the path exactly. A collection
    error has an empty classname and the module's dotted path as name: its id is the test file."""
    try:
        root = ET.fromstring(xml_text)
    except (ET.ParseError, ValueError):
        return {}
    outcomes: dict[str, TestOutcome] = {}
    for case in root.iter("testcase"):
        test_id = _junit_id(case.get("classname", ""), case.get("name", ""), case.get("file"))
        outcome = _junit_outcome(case)
        if test_id not in outcomes or _SEVERITY[outcome] > _SEVERITY[outcomes[test_id]]:
            outcomes[test_id] = outcome
    return outcomes


def _junit_id(classname: str, name: str, file: str | None) -> str:
    if not classname:
        return file or _dotted_to_path(name.split("."))
    parts = classname.split(".")
    if file:
        split = len(PurePosixPath(file).with_suffix("").parts)
        return "::".join([file, *parts[split:], name])
    split = len(parts)
    while split > 1 and parts[split - 1][:1].isupper():  # classes are CamelCase, modules are not
        split -= 1
    return "::".join([_dotted_to_path(parts[:split]), *parts[split:], name])


def _dotted_to_path(parts: list[str]) -> str:
    return "/".join(parts) + ".py"


def _junit_outcome(case: ET.Element) -> TestOutcome:
    tags = {child.tag for child in case}
    if "error" in tags:
        return TestOutcome.ERROR
    if "failure" in tags:
        return TestOutcome.FAILED
    return TestOutcome.SKIPPED if "skipped" in tags else TestOutcome.PASSED


# --- unittest -v -----------------------------------------------------------------------------------------

_UT_START = re.compile(r"(?P<name>[\w.]+) \((?P<where>[\w.]+)\)(?: \([^)\n]*\))?(?:\n[^\n]*?)? \.\.\. ")
_UT_RESULT = re.compile(r"^\s*(ok|FAIL|ERROR|skipped|expected failure|unexpected success)\b", re.MULTILINE)
_UT_HEADER = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (?P<name>[\w.]+) \((?P<where>[\w.]+)\)", re.M)
_UT_SEPARATOR = re.compile(r"^(?:={70}|-{70})$", re.MULTILINE)
_UT_OUTCOMES = {
    "ok": TestOutcome.PASSED,
    "FAIL": TestOutcome.FAILED,
    "ERROR": TestOutcome.ERROR,
    "skipped": TestOutcome.SKIPPED,
    "expected failure": TestOutcome.PASSED,
    "unexpected success": TestOutcome.FAILED,
    "UNEXPECTED SUCCESS": TestOutcome.FAILED,
}
_FIXTURES = frozenset({"setUpClass", "tearDownClass", "setUpModule", "tearDownModule"})


def parse_unittest(output: str) -> dict[str, TestOutcome]:
    """Per-test outcomes from unittest's output, keyed `pkg.mod.Class.test_x`.

    The `-v` lines give every test (Python ≤3.10 prints `test_x (pkg.mod.Class)`, 3.11+ prints
    `test_x (pkg.mod.Class.test_x)`; a docstring line or the test's own prints may come before the
    result). The `FAIL:`/`ERROR:` headers of the report add what `-v` lines miss (subtests on ≤3.10,
    `setUpClass` errors, id = the class) and are all there is with `-q`: then only failures are known.
    A module that failed to import (`unittest.loader._FailedTest`) is keyed by the module's name."""
    outcomes: dict[str, TestOutcome] = {}
    verbose = output.split("\n" + "=" * 70 + "\n", 1)[0]
    starts = list(_UT_START.finditer(verbose))
    for i, start in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(verbose)
        segment = _UT_SEPARATOR.split(verbose[start.end() : end], 1)[0]
        if result := _UT_RESULT.search(segment):
            _record(outcomes, _unittest_id(start["name"], start["where"]), _UT_OUTCOMES[result[1]])
    for header in _UT_HEADER.finditer(output):
        _record(outcomes, _unittest_id(header["name"], header["where"]), _UT_OUTCOMES[header[1]])
    return outcomes


def _record(outcomes: dict[str, TestOutcome], test_id: str, outcome: TestOutcome) -> None:
    """Keeps the worst outcome for an id: a failing subtest makes its test fail."""
    if test_id not in outcomes or _SEVERITY[outcome] > _SEVERITY[outcomes[test_id]]:
        outcomes[test_id] = outcome


def _unittest_id(name: str, where: str) -> str:
    if where.startswith("unittest.loader._FailedTest"):
        return name
    if name in _FIXTURES or where.endswith(f".{name}"):
        return where
    return f"{where}.{name}"


# --- summaries ---------------------------------------------------------------------------------------

_PYTEST_STATS = re.compile(
    r"^=*\s*((?:\d+ [a-z]+(?: [a-z]+)?(?:, )?)+ in [\d.]+s(?: \([\d:]+\))?|no tests ran in [\d.]+s)\s*=*$",
    re.MULTILINE,
)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s\s*\n\s*\n?(\S[^\n]*)?", re.MULTILINE)
_GO_PACKAGE = re.compile(r"^(ok|FAIL|\?)[ \t]+(\S+)[ \t]+(.*)$", re.MULTILINE)
_CARGO_RESULT = re.compile(
    r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored.*$", re.MULTILINE
)
_NODE_COUNT = re.compile(r"^(?:#|ℹ) (tests|pass|fail|cancelled|skipped|todo) (\d+)$", re.MULTILINE)
_JEST = re.compile(r"^Tests:\s+(.+)$", re.MULTILINE)
_MOCHA = re.compile(r"^\s*(\d+ passing \([^)]*\))(?:\n\s*\d+ pending)?(?:\n\s*(\d+ failing))?", re.MULTILINE)
_TOX_ENV = re.compile(
    r"^\s+(?P<env>\S+): (?P<msg>OK|SKIP|FAIL code (?P<code>-?\d+)) "
    r"\((?P<time>[\d.]+)(?P<cmd>=setup\[[\d.]+\]\+cmd\[[\d.,]+\])? seconds\)$",
    re.MULTILINE,
)
_TOX_END = re.compile(r"^\s*((?:congratulations :\)|evaluation failed :\()[^\n]*)$", re.MULTILINE)
_NOX = re.compile(r"^nox > (.+)$", re.MULTILINE)


def summary_line(runner: str, output: str) -> str:
    """The runner's own closing summary, without decoration; the last non-empty line when it has none."""
    readers = _SUMMARIES.get(runner)
    candidates = [readers] if readers else list(_SUMMARIES.values())  # make, unknown: whatever ran inside
    for reader in candidates:
        if found := reader(output):
            return _clip(found)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return _clip(lines[-1] if lines else "")


def _clip(text: str, limit: int = SUMMARY_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pytest_summary(output: str) -> str:
    found = _PYTEST_STATS.findall(output)
    return found[-1] if found else ""


def _unittest_summary(output: str) -> str:
    found = list(_UNITTEST_RAN.finditer(output))
    if not found:
        return ""
    last = found[-1]
    ran = last[0].splitlines()[0].strip()
    return f"{ran}; {last[2].strip()}" if last[2] else ran


def _go_summary(output: str) -> str:
    packages = _GO_PACKAGE.findall(output)
    if not packages:
        return ""
    failed = [name for kind, name, _ in packages if kind == "FAIL"]
    ok = sum(kind == "ok" for kind, _, _ in packages)
    untested = sum(kind == "?" for kind, _, _ in packages)
    parts = [f"FAIL {', '.join(failed)}"] if failed else []
    parts += [f"ok {ok} package{'s' * (ok != 1)}"] if ok else []
    parts += [f"{untested} without tests"] if untested else []
    return "; ".join(parts)


def _cargo_summary(output: str) -> str:
    results = _CARGO_RESULT.findall(output)
    if not results:
        return ""
    passed, failed, ignored = (sum(int(r[i]) for r in results) for i in (1, 2, 3))
    verdict = "FAILED" if any(r[0] == "FAILED" for r in results) else "ok"
    return f"test result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored"


def _npm_summary(output: str) -> str:
    if counts := _node_counts(output):
        return ", ".join(f"{key} {value}" for key, value in counts.items())
    if jest := _JEST.findall(output):
        return f"Tests: {jest[-1].strip()}"
    if mocha := _MOCHA.findall(output):
        passing, failing = mocha[-1]
        return passing + (f", {failing}" if failing else "")
    return ""


def _node_counts(output: str) -> dict[str, int]:
    """node --test's closing counts (`# pass 2` with the TAP reporter, `ℹ pass 2` with spec)."""
    return {key: int(value) for key, value in _NODE_COUNT.findall(output)}


def _tox_summary(output: str) -> str:
    envs = [f"{m['env']}: {m['msg']}" for m in _TOX_ENV.finditer(output)]
    end = _TOX_END.findall(output)
    return "; ".join([*envs, *end[-1:]]) if end or envs else ""


def _nox_summary(output: str) -> str:
    lines = [line for line in _NOX.findall(output) if "Session" in line or line.startswith("* ")]
    return lines[-1] if lines else ""


_SUMMARIES: dict[str, Callable[[str], str]] = {
    "pytest": _pytest_summary,
    "unittest": _unittest_summary,
    "go": _go_summary,
    "cargo": _cargo_summary,
    "npm": _npm_summary,
    "tox": _tox_summary,
    "nox": _nox_summary,
}


# --- status -----------------------------------------------------------------------------------------

_NO_MODULE = re.compile(r"^\S*: No module named ([\w.]+)\s*$", re.MULTILINE)
_NOT_FOUND = re.compile(
    r"^(?:[\w./-]+: )?(?:line \d+: |\d+: )?([\w.+/-]+): (?:command not found|not found)\s*$", re.MULTILINE
)
_NO_SUCH_FILE = re.compile(r"(?:execvp|make:) ([\w.+/-]+): No such file or directory", re.MULTILINE)
_EXCEPTIONS = (
    re.compile(r"^E\s+(\w+(?:Error|Exception|Exit)(?::.*)?)$", re.MULTILINE),  # pytest's `E   …` lines
    re.compile(r"^(\w+(?:Error|Exception|Exit): .*)$", re.MULTILINE),  # a traceback's last line
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def classify(runner: str, exit_code: int | None, output: str, timed_out: bool) -> Verdict:
    """A command's status and a one-line reason. Failing tests make it `failed` only when tests ran;
    a missing tool, a collection error, no tests or a broken set-up make it `could_not_run`."""
    if timed_out:
        return CheckStatus.TIMED_OUT, "the command timed out"
    if exit_code is None:
        return CheckStatus.COULD_NOT_RUN, "the command did not start"
    if exit_code != 0 and (tool := _missing_tool(runner, exit_code, output)):
        return CheckStatus.COULD_NOT_RUN, f"{tool} is not installed in the test environment"
    return _JUDGES.get(runner, _judge_generic)(exit_code, output)


def _missing_tool(runner: str, exit_code: int, output: str) -> str | None:
    """The tool a failed command could not find; a runner's own summary means it started, so a test's
    `command not found` in its output is not mistaken for a missing runner."""
    if exit_code != 127 and _has_summary(runner, output):
        return None
    for pattern in (_NO_MODULE, _NOT_FOUND, _NO_SUCH_FILE):
        if found := pattern.search(output):
            return os.path.basename(found[1])
    return "the command" if exit_code == 127 else None


def _has_summary(runner: str, output: str) -> bool:
    readers = [_SUMMARIES[runner]] if runner in _SUMMARIES else list(_SUMMARIES.values())
    return any(reader(output) for reader in readers)


def _first_exception(text: str) -> str:
    """The first exception line, pytest's `E   …` form first (its headline `ImportError while importing
    test module` is not the cause)."""
    for pattern in _EXCEPTIONS:
        if found := pattern.search(text):
            return _clip(found[1], 120)
    return ""


def _by_exit(summary: str, exit_code: int) -> Verdict:
    """Tests ran: the exit code says whether they passed."""
    status = CheckStatus.PASSED if exit_code == 0 else CheckStatus.FAILED
    return status, summary or f"exit code {exit_code}"


def _cannot(reason: str, cause: str = "") -> Verdict:
    return CheckStatus.COULD_NOT_RUN, f"{reason}: {cause}" if cause else reason


def _judge_generic(exit_code: int, output: str) -> Verdict:
    return _by_exit(summary_line("unknown", output), exit_code)


def _judge_pytest(exit_code: int, output: str) -> Verdict:
    summary = _pytest_summary(output)
    if exit_code in (0, 1):
        return _by_exit(summary, exit_code)
    if exit_code == 2 and (collecting := re.search(r"^_+ ERROR collecting (\S+) _+$", output, re.M)):
        return _cannot(f"collection error in {collecting[1]}", _first_exception(output[collecting.end() :]))
    if exit_code == 5:
        return CheckStatus.COULD_NOT_RUN, "no tests ran: pytest collected nothing"
    if exit_code == 4:
        error = re.search(r"^(?:ERROR: (?!usage:)|.*?: error: )(.+)$", output, re.MULTILINE)
        return _cannot("pytest usage error", _clip(error[1], 120) if error else "")
    kinds = {2: "pytest was interrupted", 3: "pytest had an internal error"}
    return CheckStatus.COULD_NOT_RUN, kinds.get(exit_code, f"pytest stopped with exit code {exit_code}")


def _judge_unittest(exit_code: int, output: str) -> Verdict:
    if failed := re.search(r"Failed to import test module: (\S+)", output):
        return _cannot(f"test module {failed[1]} failed to import", _first_exception(output[failed.end() :]))
    if "unittest.loader._FailedTest" in output:
        return _cannot(
            "unittest could not load the tests", _first_exception(output.split("_FailedTest", 1)[1])
        )
    ran = _UNITTEST_RAN.findall(output)
    if "NO TESTS RAN" in output or (ran and ran[-1][0] == "0"):
        return CheckStatus.COULD_NOT_RUN, "no tests ran: unittest found none"
    if not ran and exit_code != 0:
        return _cannot("unittest stopped before running tests", _first_exception(output))
    return _by_exit(_unittest_summary(output), exit_code)


def _judge_go(exit_code: int, output: str) -> Verdict:
    summary = _go_summary(output)
    broken = re.findall(r"^FAIL\s+(\S+) \[(?:build|setup) failed\]$", output, re.MULTILINE)
    if broken and "--- FAIL" not in output:
        return CheckStatus.COULD_NOT_RUN, f"did not build: {', '.join(broken)}"
    if exit_code == 0 and "[no test files]" in output and not re.search(r"^ok\s", output, re.MULTILINE):
        return CheckStatus.COULD_NOT_RUN, "no tests ran: no package has test files"
    return _by_exit(summary, exit_code)


def _judge_cargo(exit_code: int, output: str) -> Verdict:
    summary = _cargo_summary(output)
    if compile_error := re.search(r"^error: could not compile\b(.*)$", output, re.MULTILINE):
        return _cannot("did not compile", _clip(compile_error[1], 120))
    results = _CARGO_RESULT.findall(output)
    if exit_code == 0 and results and sum(int(r[1]) + int(r[2]) for r in results) == 0:
        return CheckStatus.COULD_NOT_RUN, "no tests ran: cargo found none"
    return _by_exit(summary, exit_code)


def _judge_npm(exit_code: int, output: str) -> Verdict:
    if re.search(r'Missing script: "?test"?', output):
        return CheckStatus.COULD_NOT_RUN, "package.json has no test script"
    if "Error: no test specified" in output:
        return CheckStatus.COULD_NOT_RUN, "package.json has no test script (npm init's placeholder)"
    counts = _node_counts(output)
    if counts.get("tests") == 0 or re.search(r"^No tests found", output, re.MULTILINE):
        return CheckStatus.COULD_NOT_RUN, "no tests ran"
    return _by_exit(_npm_summary(output), exit_code)


def _judge_tox(exit_code: int, output: str) -> Verdict:
    """tox 4 prints one line per environment: `FAIL code N (…=setup[…]+cmd[…] seconds)` when its
    commands ran, no `cmd[…]` when it failed while being set up. tox 3 says `commands failed`."""
    envs = list(_TOX_ENV.finditer(output))
    summary = _tox_summary(output)
    failed_cmds = [m["env"] for m in envs if m["code"] and m["cmd"]] or re.findall(
        r"^ERROR:\s+(\S+): commands failed", output, re.MULTILINE
    )
    if failed_cmds:
        return CheckStatus.FAILED, summary or f"commands failed in {', '.join(failed_cmds)}"
    broken = [m["env"] for m in envs if m["code"]]
    if broken or re.search(r"InterpreterNotFound|could not install deps|could not find python", output):
        return CheckStatus.COULD_NOT_RUN, f"tox could not set up {', '.join(broken) or 'the environment'}"
    if envs and all(m["msg"] == "SKIP" for m in envs):
        return CheckStatus.COULD_NOT_RUN, "every tox environment was skipped"
    return _by_exit(summary, exit_code)


def _judge_nox(exit_code: int, output: str) -> Verdict:
    lines = _NOX.findall(output)
    installs = [line for line in lines if re.match(r"Command .*\bpip install\b.* failed", line)]
    if installs:
        return CheckStatus.COULD_NOT_RUN, "nox could not install the session's dependencies"
    ran = [line for line in lines if re.search(r"was successful|failed\.?$", line)]
    if not ran and any("skipped" in line for line in lines):
        return CheckStatus.COULD_NOT_RUN, "every nox session was skipped"
    return _by_exit(_nox_summary(output), exit_code)


def _judge_make(exit_code: int, output: str) -> Verdict:
    if target := re.search(r"No rule to make target '([^']+)'", output):
        return CheckStatus.COULD_NOT_RUN, f"the Makefile has no target {target[1]!r}"
    return _judge_generic(exit_code, output)


_JUDGES: dict[str, Callable[[int, str], Verdict]] = {
    "pytest": _judge_pytest,
    "unittest": _judge_unittest,
    "go": _judge_go,
    "cargo": _judge_cargo,
    "npm": _judge_npm,
    "tox": _judge_tox,
    "nox": _judge_nox,
    "make": _judge_make,
}


# --- one command's result ------------------------------------------------------------------------------


def check_run(
    command: str,
    exit_code: int | None,
    duration_s: float,
    output: str,
    timed_out: bool,
    junit_xml: str | None = None,
) -> CheckRun:
    """One command's `CheckRun`: status, reason, summary, per-test outcomes (JUnit XML when given, else
    unittest's output when it ran unittest) and bounded output."""
    runner = runner_of(command)
    output = _ANSI.sub("", output)
    status, reason = classify(runner, exit_code, output, timed_out)
    if timed_out:
        reason = f"timed out after {duration_s:.0f}s"
    tests = parse_junit(junit_xml) if junit_xml else {}
    if not tests and (runner == "unittest" or (runner not in _SUMMARIES and _unittest_summary(output))):
        tests = parse_unittest(output)
    return CheckRun(
        command=command,
        status=status,
        exit_code=exit_code,
        duration_s=duration_s,
        summary=summary_line(runner, output),
        reason=reason,
        tests=tests,
        output=bounded(output),
    )


def bounded(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Head and tail of `text` within `limit` characters: the head has set-up and collection errors, the
    tail the failures and the summary, so the tail gets two thirds."""
    if len(text) <= limit:
        return text
    marker = "\n… [{} characters omitted] …\n"
    room = limit - len(marker.format(len(text)))
    head, tail = room // 3, room - room // 3
    return text[:head] + marker.format(len(text) - head - tail) + text[len(text) - tail :]


# --- one test's part of the output -------------------------------------------------------------------

_BLOCK = re.compile(
    r"^(?:_{3,} (?P<pytest>.+?) _{3,}|={3,} (?P<section>.+?) ={3,}|={70}|-{70}(?=\nRan \d)"
    r"|(?P<unittest>(?:FAIL|ERROR|UNEXPECTED SUCCESS): [\w.]+ \([\w.]+\).*))$",
    re.MULTILINE,
)


def failure_excerpt(output: str, test_id: str) -> str:
    """The part of the output about one test: pytest's `___ Class.test_x ___` block (or `ERROR at setup
    of …`, `ERROR collecting <file>`), unittest's `FAIL: test_x (…)` block; "" when it is not there."""
    starts = list(_BLOCK.finditer(output))
    for i, start in enumerate(starts):
        title = start["pytest"] or start["unittest"]
        if title and _is_block_of(title, test_id):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(output)
            return output[start.start() : end].strip()
    return ""


def _is_block_of(title: str, test_id: str) -> bool:
    if header := _UT_HEADER.match(title):
        return _unittest_id(header["name"], header["where"]) == test_id
    path, _, rest = test_id.partition("::")
    if not rest:
        return title == f"ERROR collecting {path}"
    shown = rest.replace("::", ".")
    return title == shown or title.endswith(f" of {shown}")
