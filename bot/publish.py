"""Where a run's results go. `GitHubPublisher`: comments and a draft PR through the forge, progress in
Redis and the status comment, and two check runs on the pull request's head (`Archon run` while the run
goes, `Archon evaluation` per evaluation). `FolderPublisher`: files in a folder, for `archon-bot run` at a
terminal.

Check runs are best-effort: an installation that has not yet accepted the `checks: write` permission
answers 403, and that must not fail a run whose comments, pull request and review all landed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import requests
from github import GithubException

from bot.evaluation.review import CHECK_NAME, check_conclusion, render_check
from bot.evaluation.schema import Evaluation
from bot.github.forge import FINAL, ONCE, CheckRunSpec, RepoForge, RetryPolicy
from bot.github.markers import with_marker
from bot.runs import RunRecord, RunState, RunStore
from bot.secrets import default_redactor, describe_error
from bot.status import STATUS_KIND, render_status

log = logging.getLogger(__name__)

#: After a status edit fails, later progress edits are skipped this long (the record is still saved):
#: an outage is not made worse by an edit per node, and the run is not slowed by their retries.
PROGRESS_COOLDOWN_S = 30.0
#: What a failed GitHub write raises (API errors, connections lost or timed out).
WRITE_ERRORS = (GithubException, requests.RequestException)

PLAN_KIND = "plan"
RUN_CHECK = "Archon run"
#: A finished run's check-run conclusion (a run waiting for approval leaves its check run as it is).
RUN_CONCLUSIONS = {RunState.DONE: "success", RunState.FAILED: "failure", RunState.CANCELLED: "cancelled"}
RUN_CHECK_TITLES = {RunState.DONE: "Done", RunState.FAILED: "Failed", RunState.CANCELLED: "Cancelled"}
RUNNING_TITLE = "Running"
RUNNING_SUMMARY = "Archon run `{run_id}` is working on this pull request; {where} shows its progress."
SUPERSEDED = "> ⚠️ **Superseded** by [a revised plan]({url}).\n\n"


def plan_comment(record: RunRecord, text: str, gated: bool) -> str:
    plan_model = record.config.models.get("plan")  # type: ignore[call-overload]
    model = f" · planned by `{plan_model.alias}` ({plan_model.spec.model})" if plan_model else ""
    title = f"### 📋 Plan for #{record.config.issue} — Archon run `{record.run_id}`{model}"
    if record.revision:
        title += f" · revision {record.revision}"
    footer = (
        "This plan waits for approval: comment `/archon approve` to implement it, or "
        "`/archon revise <feedback>` to have it rewritten."
        if gated and not record.approved
        else "The implementation follows this plan; the status comment shows its progress."
    )
    return f"{title}\n\n{text.strip()}\n\n---\n{footer}"


def evaluation_check(
    evaluation: Evaluation, head_sha: str, min_score: int | None, key: str, details_url: str | None = None
) -> CheckRunSpec:
    """The `Archon evaluation` check run of one evaluation (`key`: the evaluation's, as for its review)."""
    title, summary = render_check(evaluation, min_score)
    return CheckRunSpec(
        name=CHECK_NAME,
        head_sha=head_sha,
        external_id=key,
        status="completed",
        conclusion=check_conclusion(evaluation, min_score),
        title=title,
        summary=summary,
        details_url=details_url or None,
    )


def post_evaluation_check(
    forge: RepoForge, number: int, evaluation: Evaluation, min_score: int | None, key: str, url: str = ""
) -> int | None:
    """Best-effort: the evaluation's check run on pull request `number`'s head; None if it failed."""
    return _best_effort(
        f"check run for evaluation {key}",
        lambda: forge.create_check_run(
            evaluation_check(evaluation, forge.pull_head(number), min_score, key, url)
        ),
    )


def _best_effort(what: str, write: Callable[[], int]) -> int | None:
    try:
        return write()
    except WRITE_ERRORS as error:
        log.warning("%s not written (%s); the run goes on without it", what, describe_error(error))
        return None


def run_check(record: RunRecord, head_sha: str) -> CheckRunSpec:
    """The `Archon run` check run for the record's state: in progress, or completed with its conclusion."""
    if record.state in RUN_CONCLUSIONS:
        title, summary = RUN_CHECK_TITLES[record.state], record.summary or record.state.value
        status, conclusion = "completed", RUN_CONCLUSIONS[record.state]
    else:
        url = record.status_comment_url
        where = f"the [status comment]({url})" if url else "the status comment"
        title, summary = RUNNING_TITLE, RUNNING_SUMMARY.format(run_id=record.run_id, where=where)
        status, conclusion = "in_progress", None
    return CheckRunSpec(
        name=RUN_CHECK,
        head_sha=head_sha,
        external_id=record.run_id,
        status=status,
        conclusion=conclusion,
        title=title,
        summary=summary,
        details_url=record.status_comment_url or record.pr_url,
    )


class GitHubPublisher:
    """Plans, the pull request and reviews through the forge (retried writes); the status comment
    best-effort while the run goes (`progress`) and retried until it lands at the end (`finish`)."""

    def __init__(
        self,
        forge: RepoForge,
        store: RunStore,
        gated: Callable[[], bool],
        *,
        final_policy: RetryPolicy = FINAL,
        cooldown_s: float = PROGRESS_COOLDOWN_S,
        min_score: int | None = None,
    ) -> None:
        """`min_score`: the repository's `evaluation.min_score` (the evaluation check run's conclusion)."""
        self.forge, self.store, self.gated = forge, store, gated
        self.min_score = min_score
        self.final_policy, self.cooldown_s = final_policy, cooldown_s
        self._quiet_until = 0.0

    def post_plan(self, record: RunRecord, text: str) -> str:
        key = f"{record.run_id}-{record.revision}"
        posted = self.forge.upsert_comment(
            record.config.issue, PLAN_KIND, key, plan_comment(record, text, self.gated())
        )
        for revision in range(record.revision):
            self._supersede(record, f"{record.run_id}-{revision}", posted.html_url)
        return posted.html_url

    def _supersede(self, record: RunRecord, key: str, url: str) -> None:
        old = self.forge.find_comment(record.config.issue, PLAN_KIND, key)
        if old is not None and not old.body.startswith("> ⚠️ **Superseded**"):
            self.forge.edit_comment(
                record.config.issue, old.id, PLAN_KIND, key, SUPERSEDED.format(url=url) + old.body
            )

    def open_pr(self, record: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        assert record.branch and record.default_branch
        posted = self.forge.open_draft_pull(record.branch, record.default_branch, title, body, record.run_id)
        self._run_check(record, posted.id, self.forge)
        return posted.id, posted.html_url

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        """The evaluation as a COMMENT review on the run's pull request, and its check run."""
        assert record.pr_number is not None
        self.forge.post_review(record.pr_number, body, key=record.run_id, comments=comments)
        if record.evaluation is not None:
            evaluation = Evaluation.model_validate(record.evaluation)
            post_evaluation_check(
                self.forge, record.pr_number, evaluation, self.min_score, record.run_id, record.pr_url or ""
            )
        return record.pr_url or ""

    def _run_check(self, record: RunRecord, number: int, forge: RepoForge) -> None:
        """The run's check run on the pull request's head, brought to the record's state (best-effort)."""
        _best_effort(
            f"run {record.run_id}: check run",
            lambda: forge.create_check_run(run_check(record, forge.pull_head(number))),
        )

    def progress(self, record: RunRecord) -> None:
        """Save the record, then edit the status comment, best-effort (every node change).

        A failed edit never fails the run: it is logged, and edits pause for `cooldown_s`; the record
        in Redis is already saved, and the terminal state goes out through `finish`, which retries.
        """
        self.store.save(record)
        if time.monotonic() < self._quiet_until:
            return
        try:
            self._show(record, self.forge.with_policy(ONCE))
        except WRITE_ERRORS as error:
            self._quiet_until = time.monotonic() + self.cooldown_s
            log.warning(
                "run %s: status comment not updated (%s); the record is saved, edits pause for %.0fs",
                record.run_id,
                describe_error(error),
                self.cooldown_s,
            )

    def finish(self, record: RunRecord) -> bool:
        """Save the record, then write its terminal state (done, failed, cancelled, waiting) to the status
        comment, retried until it lands within `final_policy`. False (logged) if it never did."""
        self.store.save(record)
        try:
            self._show(record, self.forge.with_policy(self.final_policy))
        except WRITE_ERRORS as error:
            log.error(
                "run %s: the final status (%s) could not be written to GitHub: %s",
                record.run_id,
                record.state,
                describe_error(error),
            )
            return False
        if record.pr_number is not None and record.state in RUN_CONCLUSIONS:
            self._run_check(record, record.pr_number, self.forge)
        return True

    def _show(self, record: RunRecord, forge: RepoForge) -> None:
        body = render_status(record)
        if record.status_comment_id is None:
            posted = forge.upsert_comment(record.config.issue, STATUS_KIND, record.run_id, body)
        else:
            posted = forge.edit_comment(
                record.config.issue, record.status_comment_id, STATUS_KIND, record.run_id, body
            )
        record.status_comment_id, record.status_comment_url = posted.id, posted.html_url
        self.store.save(record)


class FolderPublisher:
    """`plan.md`, `pull-request.md`, `status.md` and `run.json` in a folder; `on_progress` for a display."""

    def __init__(self, folder: Path, on_progress: Callable[[RunRecord], None] | None = None) -> None:
        self.folder = folder
        self.on_progress = on_progress
        folder.mkdir(parents=True, exist_ok=True)

    def post_plan(self, record: RunRecord, text: str) -> str:
        path = self.folder / ("plan.md" if not record.revision else f"plan-r{record.revision}.md")
        path.write_text(plan_comment(record, text, gated=False) + "\n")
        return path.resolve().as_uri()

    def open_pr(self, record: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        path = self.folder / "pull-request.md"
        path.write_text(f"# {title}\n\nBranch `{record.branch}` → `{record.default_branch}`\n\n{body}\n")
        return None, path.resolve().as_uri()

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        inline = "".join(f"\n- `{c['path']}:{c['line']}` — {c['body']}" for c in comments)
        path = self.folder / "review.md"
        path.write_text(body + ("\n\n## Inline comments\n" + inline if inline else "") + "\n")
        return path.resolve().as_uri()

    def finish(self, record: RunRecord) -> bool:
        """The terminal state: a folder write either works or raises, so the same as `progress`."""
        self.progress(record)
        return True

    def progress(self, record: RunRecord) -> None:
        (self.folder / "status.md").write_text(with_marker(render_status(record), "local", record.run_id))
        data = default_redactor().redact_obj(record.model_dump(mode="json"))
        (self.folder / "run.json").write_text(json.dumps(data, indent=2) + "\n")
        if self.on_progress:
            self.on_progress(record)
