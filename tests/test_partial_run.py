"""A deployment with `ARCHON_GIT_PARTIAL_CLONE=true` on a remote that allows filters: a labelled issue runs
to a pull request from a blobless mirror, and `/archon evaluate` validates a person's pull request from it
(its validation clones with --shared, which cannot fetch lazily: the mirror is hydrated first)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.runs import RunState
from tests.support import REPO
from tests.test_triage import command, run_labelled_issue, work
from tests.test_workflow_run import RUNS, no_plan_judge, push_human_fix


def git(*args: str | Path) -> str:
    return subprocess.run(["git", *map(str, args)], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def partial(remote: Path, worker_env, monkeypatch) -> Path:
    git("--git-dir", remote, "config", "uploadpack.allowFilter", "true")
    monkeypatch.setenv("ARCHON_GIT_PARTIAL_CLONE", "true")
    return Path(worker_env["ARCHON_DATA_DIR"]) / "git"


def the_mirror(git_dir: Path) -> Path:
    [config] = [
        p for p in git_dir.rglob("config") if (p.parent / "HEAD").is_file() and "worktrees" not in p.parts
    ]
    return config.parent


def test_a_run_from_a_partial_mirror(github, redis_conn, remote: Path, partial: Path) -> None:
    record = run_labelled_issue(redis_conn)

    assert record.state is RunState.DONE, record.error
    mirror = the_mirror(partial)
    assert git("--git-dir", mirror, "config", "remote.origin.partialclonefilter").strip() == "blob:none"
    assert git("--git-dir", remote, "branch", "--list", record.branch).strip() == record.branch
    [pull] = github.pulls(REPO)
    assert len(github.reviews(REPO, pull["number"])) == 1


def test_evaluate_a_person_s_pull_request_from_a_partial_mirror(
    github, redis_conn, remote: Path, partial: Path, tmp_path: Path, monkeypatch
) -> None:
    no_plan_judge(tmp_path / "judges")
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(tmp_path / "judges"))
    run_labelled_issue(redis_conn)  # the mirror is made (blobless) by a run first
    push_human_fix(remote, tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify", author="someone")

    command(github, redis_conn, "/archon evaluate", pull_request=True, issue=number)
    work(redis_conn, RUNS)

    [review] = github.reviews(REPO, number)
    assert "Validation" in review["body"] and "could not" not in review["body"].lower(), review["body"]
    assert git("--git-dir", the_mirror(partial), "config", "remote.origin.promisor").strip() == "true"
