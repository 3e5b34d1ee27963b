"""Real open-source projects as test repositories, replayed from `tests/data/projects/`.

`scripts/refresh_real_projects.py` vendors three pinned sdists and writes `projects.json`; this module
turns one into a real git repository:

* commit 1 (`released`) — the sdist as released, tests included;
* commit 2 (`base`, branch `main`) — the known bug planted: the "base branch";
* branch `fix` — the bug fixed and the fix's new test added.

A project's pre-existing failures (tests that fail on Python 3.11 whatever the bug) are in every commit.
Authors, dates and messages are fixed, so the same data always gives the same shas.

`run_tests` runs a project's own test command in a venv with its test dependencies (`project_venv`), as a
person would, for the fixture self-checks in `tests/test_real_projects.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "projects"
INDEX = DATA / "projects.json"

_AUTHOR = ("Archon Fixtures", "fixtures@archon.invalid")
_DATES = ("2024-01-01T00:00:00+00:00", "2024-01-01T01:00:00+00:00", "2024-01-01T02:00:00+00:00")


@cache
def index() -> dict[str, dict[str, Any]]:
    """The projects in `projects.json`, by name."""
    return {p["name"]: p for p in json.loads(INDEX.read_text())["projects"]}


def names() -> list[str]:
    return sorted(index())


@dataclass(frozen=True)
class RealProject:
    name: str
    version: str
    layout: str
    runner: str  # "pytest" or "unittest": the form of the test ids below
    test_command: str
    pythonpath: str  # relative to the checkout ("src" for a src layout), or ""
    test_deps: tuple[str, ...]
    repo: Path
    released: str  # commit 1: the sdist
    base: str  # commit 2: the bug planted (branch `main`)
    fix: str  # branch `fix`: the bug fixed, the new test added
    failing_tests: tuple[str, ...]  # fail on `base` because of the bug, pass on `fix`
    new_test: str  # added by `fix`: fails on the base code, passes on the fix
    pre_existing: tuple[str, ...]  # fail on every commit
    bug_file: str
    test_file: str
    data: dict[str, Any] = field(repr=False, compare=False)


class ProjectError(RuntimeError):
    """The vendored data does not say what it claims (wrong checksum, text not found)."""


def _git(repo: Path, *args: str, date: str = _DATES[0]) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in ("EMAIL", "HOME", "XDG_CONFIG_HOME")
    }
    env.update(
        HOME=str(repo),  # no user or system configuration leaks in
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME=_AUTHOR[0],
        GIT_AUTHOR_EMAIL=_AUTHOR[1],
        GIT_COMMITTER_NAME=_AUTHOR[0],
        GIT_COMMITTER_EMAIL=_AUTHOR[1],
        GIT_AUTHOR_DATE=date,
        GIT_COMMITTER_DATE=date,
    )
    config = ["-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", "core.hooksPath=/dev/null"]
    result = subprocess.run(
        ["git", *config, *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProjectError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def _unpack(data: dict[str, Any], dest: Path) -> None:
    archive = DATA / data["sdist"]
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != data["sha256"]:
        raise ProjectError(f"{archive.name}: sha256 {digest}, projects.json says {data['sha256']}")
    prefix = f"{data['name']}-{data['version']}/"
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        top = Path(tmp) / prefix.rstrip("/")
        if not top.is_dir():
            raise ProjectError(f"{archive.name} has no top-level {prefix}")
        shutil.copytree(top, dest, dirs_exist_ok=True)


def _replace(repo: Path, relpath: str, old: str, new: str) -> None:
    path = repo / relpath
    text = path.read_text()
    if text.count(old) != 1:
        raise ProjectError(f"{relpath}: the text to replace occurs {text.count(old)} times, not once")
    path.write_text(text.replace(old, new))


def real_project(name: str, workdir: Path) -> RealProject:
    """Build `name`'s repository in `workdir/name` (which must not exist yet) and describe it."""
    data = index()[name]
    repo = workdir / name
    repo.mkdir(parents=True)
    _unpack(data, repo)
    bug, fix = data["bug"], data["fix"]

    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A", "-f")  # the sdist exactly, whatever a .gitignore in it says
    _git(repo, "commit", "-q", "-m", f"{name} {data['version']} as released (sdist)", date=_DATES[0])
    released = _git(repo, "rev-parse", "HEAD")

    _replace(repo, bug["file"], bug["old"], bug["new"])
    _git(repo, "commit", "-q", "-am", f"Known bug ({bug['origin']}): {bug['summary']}", date=_DATES[1])
    base = _git(repo, "rev-parse", "HEAD")

    _git(repo, "checkout", "-q", "-b", "fix")
    _replace(repo, bug["file"], bug["new"], bug["old"])
    _replace(repo, fix["test_file"], fix["old"], fix["new"])
    _git(repo, "commit", "-q", "-am", f"Fix: {fix['summary']}", date=_DATES[2])
    fixed = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "main")

    return RealProject(
        name=name,
        version=data["version"],
        layout=data["layout"],
        runner=data["runner"],
        test_command=data["test_command"],
        pythonpath=data["pythonpath"],
        test_deps=tuple(data["test_deps"]),
        repo=repo,
        released=released,
        base=base,
        fix=fixed,
        failing_tests=tuple(data["failing_tests"]),
        new_test=fix["new_test"],
        pre_existing=tuple(p["test"] for p in data["pre_existing_failures"]),
        bug_file=bug["file"],
        test_file=fix["test_file"],
        data=data,
    )


class RealProjects:
    """Each project built once under `workdir` (the session fixture `real_projects`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._built: dict[str, RealProject] = {}

    def __call__(self, name: str) -> RealProject:
        if name not in self._built:
            self._built[name] = real_project(name, self.workdir)
        return self._built[name]


def export(project: RealProject, commit: str, dest: Path, *, tests_from: str | None = None) -> Path:
    """A plain copy of `commit`'s tree in `dest` (no .git). With `tests_from`, the fix's test file is taken
    from that commit instead: the new test on the old code, as a fix proof runs it."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=project.repo, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if tests_from is not None:
        (dest / project.test_file).write_bytes(
            subprocess.run(
                ["git", "show", f"{tests_from}:{project.test_file}"],
                cwd=project.repo,
                capture_output=True,
                check=True,
            ).stdout
        )
    return dest


# --- running a project's own tests, as a person would ---------------------------------------------------


@dataclass(frozen=True)
class TestRun:
    """One run of a project's test command: the exit code and the failed (or errored) test ids."""

    __test__ = False  # not a pytest test class

    exit_code: int
    failed: frozenset[str]
    output: str


def project_venv(workdir: Path, deps: tuple[str, ...]) -> Path:
    """A venv with `deps` (pytest at this environment's version, so runs are reproducible); its python."""
    venv = workdir / "venv"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pins = [f"pytest=={metadata.version('pytest')}" if d == "pytest" else d for d in deps]
    if pins:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
            check=True,
            capture_output=True,
            text=True,
        )
    return python


_PYTEST_FAILURE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)  # pytest's -rfE short summary
_UNITTEST_FAILURE = re.compile(r"^(?:FAIL|ERROR): \S+ \(([\w.]+)\)", re.MULTILINE)


def run_tests(project: RealProject, checkout: Path, python: Path, *ids: str) -> TestRun:
    """The project's own test command (`python -m pytest` / `python -m unittest`) on `checkout`, all tests
    or only `ids`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON", "COV_", "VIRTUAL_ENV"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if project.pythonpath:
        env["PYTHONPATH"] = str(checkout / project.pythonpath)
    if project.runner == "pytest":
        command = [str(python), "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *ids]
        pattern = _PYTEST_FAILURE
    else:
        command = [str(python), "-m", "unittest", *ids]
        pattern = _UNITTEST_FAILURE
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    return TestRun(result.returncode, frozenset(pattern.findall(output)), output)
