"""`archon-bot run` on a local repository: the same workflow, results in a folder, nothing pushed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bot import sample_repo
from bot.cli import main


def test_run_on_a_local_repository(tmp_path: Path, monkeypatch, capsys) -> None:
    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    issue = tmp_path / "issue.md"
    issue.write_text(f"# {sample_repo.ISSUE_TITLE}\n\n{sample_repo.ISSUE_BODY}\n")
    monkeypatch.setenv("ARCHON_ENV_FILE", "")
    monkeypatch.setenv("ARCHON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARCHON_MODELS_FILE", str(sample_repo.write_models_file(tmp_path / "models.yml")))
    code = main(
        [
            "run",
            "--repo",
            str(bare),
            "--issue-file",
            str(issue),
            "--plan",
            "opus",
            "--impl",
            "kimi",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0, capsys.readouterr().out
    [folder] = (tmp_path / "out").iterdir()
    assert "## Root cause" in (folder / "plan.md").read_text()
    assert (folder / "pull-request.md").read_text().startswith(f"# Fix #0: {sample_repo.ISSUE_TITLE}")
    assert (
        '+    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))'
        in (folder / "changes.diff").read_text()
    )
    ledger = json.loads((folder / "ledger.json").read_text())
    assert ledger["pairing"] == "plan-opus impl-kimi" and ledger["cost_usd"] > 0
    assert ledger["nodes"]["implement"]["answered_by"] == "scripted:demo-kimi-implement"
    assert {p.name for p in (folder / "transcripts").iterdir()} >= {"plan-1.jsonl", "implement-1.jsonl"}
    branches = subprocess.run(
        ["git", "--git-dir", str(bare), "branch", "--list", "archon/*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert branches == ""  # the repository was not pushed to


def test_run_needs_an_issue(capsys) -> None:
    assert main(["run", "--repo", "."]) == 2
    assert "--issue" in capsys.readouterr().err


def test_evaluate_a_local_change(tmp_path: Path, monkeypatch, capsys) -> None:
    from tests.test_workflow_run import no_plan_judge, push_human_fix

    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    push_human_fix(bare, tmp_path)
    no_plan_judge(tmp_path / "judges")
    monkeypatch.setenv("ARCHON_ENV_FILE", "")
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(tmp_path / "judges"))
    monkeypatch.setenv("ARCHON_MODELS_FILE", str(sample_repo.write_models_file(tmp_path / "models.yml")))
    code = main(
        [
            "evaluate",
            "--repo",
            str(tmp_path / "human"),
            "--base",
            "origin/main",
            "--head",
            "human-fix",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0, capsys.readouterr().out
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["out_of"] == 60 and evaluation["status"] == "ok"
    assert (
        evaluation["signals"]["validation_before"] is False
        and evaluation["signals"]["validation_after"] is True
    )
    assert "/ 60" in (tmp_path / "eval" / "review.md").read_text()
