"""Evaluating a change end to end: measure, judge, anchor, render. Used by the workflow's `evaluate`
node, by `/archon evaluate` on any pull request, and by `archon-bot evaluate` at a terminal."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.evaluation.judge import Case, JudgeRun, evaluate
from bot.evaluation.review import anchor, render_review
from bot.evaluation.schema import Evaluation
from bot.evaluation.signals import measure
from bot.limits import RunGuard, guarded
from bot.providers.types import ModelSlot, Usage
from bot.validation.baseline import render_markdown
from bot.validation.schema import CheckStatus, Evidence
from bot.workspace import DIFF_OPTIONS, checked_git_dir, git_text

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
    evidence: Evidence | None = None,
    repo_files: Collection[str] | None = None,
    guard: RunGuard | None = None,
    conventions: str = "",
) -> Verdict:
    """`evidence`: what validation measured (the merge base and the change, the fix proof); the review
    shows it and the judge reads its real output. `guard`: the run's cost cap and the installation's daily
    spend, checked before each judge's call and charged after it (the judges do not use the agent loop).
    `conventions`: the repository's guidance for contributors, fenced (`bot.conventions`); "" for none."""
    judges = [(alias, guarded(slot, guard)) for alias, slot in judges]
    signals = measure(diff, plan, before, after, evidence)
    if evidence is not None:
        validation_output = judge_validation_text(evidence)
    case = Case(
        issue_title=title,
        issue_body=body,
        diff=diff,
        plan=plan,
        validation=validation_output,
        signals=signals,
        repo_files=frozenset(repo_files) if repo_files is not None else None,
        conventions=conventions,
    )
    evaluation, runs = evaluate(judges, case)
    anchored, leftover = anchor(evaluation.comments, diff)
    body = render_review(evaluation, leftover, validation=_validation_section(evidence))
    return Verdict(evaluation, body, anchored, runs)


def _validation_section(evidence: Evidence | None) -> str | None:
    if evidence is None:
        return None
    return render_markdown(evidence.base, evidence.after, evidence.comparison, evidence.proof)


def judge_validation_text(evidence: Evidence, limit: int = 12000) -> str:
    """What the judge reads: the comparison, the proof, then each command's real output (bounded)."""
    parts = [render_markdown(evidence.base, evidence.after, evidence.comparison, evidence.proof)]
    for check in [*evidence.after.setup, *evidence.after.checks]:
        if check.status is not CheckStatus.PASSED or check in evidence.after.checks:
            parts.append(f"$ {check.command}\n{_tail(check.output, limit // 4)}")
    text = "\n\n".join(parts)
    return text if len(text) <= limit else text[: limit // 2] + "\n[…]\n" + text[-limit // 2 :]


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "[…]\n" + text[-limit:]


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


def files_at(repo_dir: Path, commit: str = "HEAD") -> list[str]:
    """Every file of `commit` (what evidence in a review may cite besides the diff)."""
    args = ["--git-dir", str(checked_git_dir(repo_dir)), "ls-tree", "-r", "--name-only", "-z", commit]
    return [name for name in git_text(args, cwd=repo_dir).split("\0") if name]


def git_diff(repo_dir: Path, base: str, head: str) -> str:
    """`base...head` as a unified diff, with no external diff or textconv program the repository names."""
    args = ["--git-dir", str(checked_git_dir(repo_dir)), "diff", *DIFF_OPTIONS, "-M"]
    return git_text([*args, f"{base}...{head}"], cwd=repo_dir)
