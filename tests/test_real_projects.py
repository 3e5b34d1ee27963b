"""The real-project fixtures are what they claim (`tests/projects.py`, `tests/data/projects/`).

Each project's own tests run with its own command (`python -m pytest` / `python -m unittest`) in a
throwaway venv holding only its test dependencies: on `base` the bug's tests fail, on `fix` they pass, the
fix's new test fails on the base code, and a pre-existing failure fails on both. No bot code is involved:
these check the data that validation tests build on. Run them alone with `-k real_projects`.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.projects import (
    DATA,
    RealProject,
    RealProjects,
    export,
    index,
    names,
    project_venv,
    real_project,
    run_tests,
)


@pytest.fixture(scope="session")
def project_python(tmp_path_factory: pytest.TempPathFactory):
    """A venv per set of test dependencies, built once per session; its python."""
    built: dict[tuple[str, ...], Path] = {}

    def python(project: RealProject) -> Path:
        if project.test_deps not in built:
            workdir = tmp_path_factory.mktemp(f"venv-{'-'.join(project.test_deps) or 'bare'}")
            try:
                built[project.test_deps] = project_venv(workdir, project.test_deps)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot build a venv with {project.test_deps}: {exc.stderr or exc}")
        return built[project.test_deps]

    return python


def _changed(project: RealProject, a: str, b: str) -> set[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", a, b], cwd=project.repo, capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_real_projects_vendored_sdists_match_their_checksums():
    total = 0
    for data in index().values():
        archive = DATA / data["sdist"]
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == data["sha256"]
        assert archive.stat().st_size == data["size"]
        total += data["size"]
    assert total < 2_000_000
    assert {d["layout"] for d in index().values()} == {"src", "flat"}
    assert {d["runner"] for d in index().values()} == {"pytest", "unittest"}
    assert sum(bool(d["pre_existing_failures"]) for d in index().values()) == 1


@pytest.mark.parametrize("name", names())
def test_real_projects_history(real_projects: RealProjects, name: str, tmp_path: Path):
    project = real_projects(name)
    branches = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"],
        cwd=project.repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert sorted(branches) == sorted([f"fix {project.fix}", f"main {project.base}"])
    assert _changed(project, project.released, project.base) == {project.bug_file}
    assert _changed(project, project.base, project.fix) == {project.bug_file, project.test_file}
    assert _changed(project, project.released, project.fix) == {project.test_file}
    # the same data gives the same shas
    again = real_project(name, tmp_path)
    assert (again.released, again.base, again.fix) == (project.released, project.base, project.fix)


@pytest.mark.parametrize("name", names())
def test_real_projects_base_fails_exactly_the_known_tests(
    real_projects: RealProjects, project_python, name: str, tmp_path: Path
):
    project = real_projects(name)
    run = run_tests(project, export(project, project.base, tmp_path / "base"), project_python(project))
    assert run.exit_code != 0, run.output
    assert run.failed == {*project.failing_tests, *project.pre_existing}, run.output


@pytest.mark.parametrize("name", names())
def test_real_projects_fix_passes_but_for_pre_existing_failures(
    real_projects: RealProjects, project_python, name: str, tmp_path: Path
):
    project = real_projects(name)
    run = run_tests(project, export(project, project.fix, tmp_path / "fix"), project_python(project))
    assert run.failed == set(project.pre_existing), run.output
    assert (run.exit_code == 0) is (not project.pre_existing), run.output


@pytest.mark.parametrize("name", names())
def test_real_projects_new_test_fails_on_base_code_and_passes_on_fix(
    real_projects: RealProjects, project_python, name: str, tmp_path: Path
):
    project = real_projects(name)
    python = project_python(project)
    old_code = export(project, project.base, tmp_path / "old", tests_from=project.fix)
    before = run_tests(project, old_code, python, project.new_test)
    assert before.exit_code != 0 and before.failed == {project.new_test}, before.output
    after = run_tests(project, export(project, project.fix, tmp_path / "new"), python, project.new_test)
    assert after.exit_code == 0 and not after.failed, after.output
    assert "Ran 1 test" in after.output or "1 passed in" in after.output, after.output
