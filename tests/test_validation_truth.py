"""Validation tells the truth on real projects: the claims the review makes, checked on real code.

Three real open-source projects (tests/projects.py: pinned PyPI sdists rebuilt as git repositories with a
known bug on `main` and its fix on `fix`) go through the same `evidence_between` that `archon-bot evaluate`
and `/archon evaluate` use: detection from the project's own files, a cached virtualenv built in the
sandbox with package-index access only, the tests run with no network on the change and on the merge
base, and the change's new test run against the old code.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.evaluation.service import git_diff
from bot.evaluation.signals import measure
from bot.sandbox import Sandbox, SandboxPolicy, bwrap_problem
from bot.validation.schema import CheckStatus, Evidence
from bot.validation.validator import evidence_between
from tests.projects import RealProject

pytestmark = pytest.mark.skipif(bwrap_problem() is not None, reason=f"bwrap unusable: {bwrap_problem()}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the module, so environments built once are reused (as on a worker)."""
    return tmp_path_factory.mktemp("validation-data")


def evidence(project: RealProject, base: str, head: str, data_dir: Path, lines: list[str]) -> Evidence:
    found = evidence_between(
        project.repo,
        base,
        head,
        validate=(),
        setup=(),
        plan_text=None,
        sandbox=Sandbox(SandboxPolicy(hidden=(data_dir,))),
        data_dir=data_dir,
        progress=lines.append,
    )
    assert found is not None, "nothing was detected"
    return found


def same(ids: list[str], expected: tuple[str, ...] | list[str]) -> bool:
    """Test ids as the project's runner names them (pytest node ids or unittest dotted ids)."""
    return set(expected) <= set(ids)


@pytest.mark.parametrize("name", ["cachetools", "toolz", "idna"])
def test_a_real_fix_is_proven_and_nothing_is_blamed_on_it(real_projects, data_dir: Path, name: str) -> None:
    project = real_projects(name)
    lines: list[str] = []
    found = evidence(project, project.base, project.fix, data_dir, lines)
    comparison, proof = found.comparison, found.proof
    assert found.after.plan.source and found.after.plan.python_env
    assert comparison.passed, comparison.reason
    assert comparison.new_failures == []
    assert same(comparison.fixed, project.failing_tests), (comparison.fixed, project.failing_tests)
    assert same(comparison.pre_existing, project.pre_existing)
    assert proof is not None and proof.ran, proof
    assert project.new_test in proof.proven, proof
    assert "fail on the old code and pass on the new" in proof.headline()
    assert any("$ " in line or "environment" in line for line in lines)  # progress was reported


def test_detection_says_where_the_commands_came_from(real_projects, data_dir: Path) -> None:
    sources = {}
    for name in ("cachetools", "toolz", "idna"):
        project = real_projects(name)
        found = evidence(project, project.base, project.fix, data_dir, [])
        sources[name] = (found.after.plan.source, found.after.plan.commands)
    assert "tox" in sources["cachetools"][0]
    assert any("pytest" in c for c in sources["toolz"][1])
    assert any("unittest" in c for c in sources["idna"][1])


def test_a_pre_existing_failure_is_not_the_changes_fault(real_projects, data_dir: Path) -> None:
    """toolz 0.11.2's `test_tlz` fails on Python 3.11 on every commit."""
    project = real_projects("toolz")
    found = evidence(project, project.base, project.fix, data_dir, [])
    assert found.base is not None and found.base.status is CheckStatus.FAILED
    assert found.after.status is CheckStatus.FAILED  # the suite as a whole does not pass…
    assert found.comparison.passed  # …but nothing the change did is failing
    assert set(project.pre_existing) <= set(found.comparison.pre_existing)
    signals = measure(git_diff(project.repo, project.base, project.fix), None, None, None, found)
    assert signals.validation_after is True and set(project.pre_existing) <= set(
        signals.pre_existing_failures
    )


def test_a_change_that_breaks_tests_is_caught(real_projects, data_dir: Path, tmp_path: Path) -> None:
    """The fix, then a commit that puts the bug back: the tests the fix made pass now fail, and only those."""
    project = real_projects("cachetools")
    bad = _commit_on(project, project.fix, tmp_path, _reintroduce_bug(project))
    found = evidence(project, project.fix, bad, data_dir, [])
    assert not found.comparison.passed
    assert same(found.comparison.new_failures, project.failing_tests)
    assert found.comparison.pre_existing == []
    assert "fail" in found.comparison.reason


def test_environments_are_cached(real_projects, data_dir: Path) -> None:
    project = real_projects("idna")
    evidence(project, project.base, project.fix, data_dir, [])
    lines: list[str] = []
    again = evidence(project, project.base, project.fix, data_dir, lines)
    assert "cached" in again.after.environment, again.after.environment


def test_renames_are_renames(real_projects, tmp_path: Path) -> None:
    project = real_projects("toolz")
    renamed = _commit_on(project, project.fix, tmp_path, lambda tree: _rename(tree, "toolz/recipes.py"))
    diff = git_diff(project.repo, project.fix, renamed)
    assert "rename from toolz/recipes.py" in diff
    signals = measure(diff, None, None, None)
    assert signals.lines_added == 0 and signals.lines_removed == 0


# --- helpers: commits on a real project's repository --------------------------------------------


def _commit_on(project: RealProject, parent: str, tmp_path: Path, change) -> str:
    tree = tmp_path / "edit"
    _git(project.repo, "worktree", "add", "-q", "--detach", str(tree), parent)
    try:
        change(tree)
        _git(tree, "add", "-A")
        _git(tree, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "change")
        return _git(tree, "rev-parse", "HEAD").strip()
    finally:
        _git(project.repo, "worktree", "remove", "--force", str(tree))


def _reintroduce_bug(project: RealProject):
    bug = project.data["bug"]

    def change(tree: Path) -> None:
        path = tree / project.bug_file
        text = path.read_text()
        assert bug["old"] in text  # the fixed code, as the fix branch has it
        path.write_text(text.replace(bug["old"], bug["new"], 1))

    return change


def _rename(tree: Path, path: str) -> None:
    _git(tree, "mv", path, path.replace(".py", "_renamed.py"))


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout
