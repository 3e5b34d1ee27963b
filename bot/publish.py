"""Where a run's results go. `GitHubPublisher`: comments and a draft PR through the forge, progress in
Redis and the status comment. `FolderPublisher`: files in a folder, for `archon-bot run` at a terminal."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import requests
from github import GithubException

from bot.github.forge import FINAL, ONCE, RepoForge, RetryPolicy
from bot.github.markers import with_marker
from bot.runs import RunRecord, RunStore
from bot.secrets import default_redactor, describe_error
from bot.status import STATUS_KIND, render_status

log = logging.getLogger(__name__)

#: After a status edit fails, later progress edits are skipped this long (the record is still saved):
#: an outage is not made worse by an edit per node, and the run is not slowed by their retries.
PROGRESS_COOLDOWN_S = 30.0
#: What a failed GitHub write raises (API errors, connections lost or timed out).
WRITE_ERRORS = (GithubException, requests.RequestException)

PLAN_KIND = "plan"
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
    ) -> None:
        self.forge, self.store, self.gated = forge, store, gated
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
        return posted.id, posted.html_url

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        """The evaluation as a COMMENT review on the run's pull request."""
        assert record.pr_number is not None
        self.forge.post_review(record.pr_number, body, key=record.run_id, comments=comments)
        return record.pr_url or ""

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
