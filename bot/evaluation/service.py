"""Evaluating a change end to end: measure, judge, anchor, render. Used by the workflow's `evaluate`
node, by `/archon evaluate` on any pull request, and by `archon-bot evaluate` at a terminal."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.agent.tools import Toolbox
from bot.evaluation.judge import Case, JudgeRun, evaluate
from bot.evaluation.review import anchor, render_review
from bot.evaluation.schema import Evaluation
from bot.evaluation.signals import measure
from bot.providers.types import ModelSlot, Usage

VALIDATE_TIMEOUT_S = 900


@dataclass
class Verdict:
    """An evaluation, the review ready to post, and what judging cost."""

    evaluation: Evaluation
    body: str
    comments: list[dict]
    runs: list[JudgeRun]

    @property
    def usage(self) -> Usage:
        return sum((run.usage for run in self.runs), Usage())

    @property
    def cost_usd(self) -> float:
        return round(sum(run.cost_usd for run in self.runs), 8)

    def headline(self) -> str:
        evaluation = self.evaluation
        if evaluation.status == "failed":
            return f"Evaluation failed: {evaluation.error}"
        return f"Evaluation: {evaluation.total:g} / {evaluation.out_of}"


def judge_change(
    judges: list[tuple[str, ModelSlot]],
    *,
    title: str,
    body: str,
    diff: str,
    plan: str | None,
    validation_output: str = "",
    before: bool | None = None,
    after: bool | None = None,
) -> Verdict:
    signals = measure(diff, plan, before, after)
    case = Case(
        issue_title=title,
        issue_body=body,
        diff=diff,
        plan=plan,
        validation=validation_output,
        signals=signals,
    )
    evaluation, runs = evaluate(judges, case)
    anchored, leftover = anchor(evaluation.comments, diff)
    return Verdict(evaluation, render_review(evaluation, leftover), anchored, runs)


def validate_at(
    repo_dir: Path, commit: str, commands: Sequence[str], secrets: Sequence[str] = ()
) -> bool | None:
    """Run the validation commands on `commit` in a throwaway checkout (the "before" signal).

    A `--shared` clone, not a worktree: it registers nothing in the repository (a mirror other runs are
    fetching into), and borrows its objects instead of copying them. None when there are no commands.
    """
    if not commands:
        return None
    sha = subprocess.run(
        ["git", "-C", str(repo_dir), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="archon-before-"))
    checkout = scratch / "tree"
    try:
        subprocess.run(
            ["git", "clone", "--quiet", "--shared", "--no-checkout", str(repo_dir), str(checkout)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["git", "-C", str(checkout), "checkout", "--quiet", "--detach", sha],
            check=True,
            capture_output=True,
        )
        box = Toolbox(checkout, (), secrets=secrets)
        return all(box.execute(command, VALIDATE_TIMEOUT_S).ok for command in commands)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def diff_from_patches(files: Sequence[tuple[str, str, str | None]]) -> str:
    """A unified diff from GitHub's per-file patches (`GET /pulls/{n}/files`), for unidiff and the judge."""
    parts = []
    for name, status, patch in files:
        if patch is None:
            parts.append(f"diff --git a/{name} b/{name}\nBinary files a/{name} and b/{name} differ\n")
            continue
        source = "/dev/null" if status == "added" else f"a/{name}"
        target = "/dev/null" if status == "removed" else f"b/{name}"
        parts.append(f"diff --git a/{name} b/{name}\n--- {source}\n+++ {target}\n{patch.rstrip()}\n")
    return "".join(parts)


def git_diff(repo_dir: Path, base: str, head: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo_dir), "diff", "--no-color", "--no-renames", f"{base}...{head}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout
