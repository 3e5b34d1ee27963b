"""Where a run's results go. `GitHubPublisher`: comments and a draft PR through the forge, progress in
Redis and the status comment. `FolderPublisher`: files in a folder, for `archon-bot run` at a terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bot.github.forge import RepoForge
from bot.github.markers import with_marker
from bot.runs import RunRecord, RunStore
from bot.secrets import default_redactor
from bot.status import STATUS_KIND, render_status

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
    def __init__(self, forge: RepoForge, store: RunStore, gated: Callable[[], bool]) -> None:
        self.forge, self.store, self.gated = forge, store, gated

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
        """Save the record and edit the status comment (every node change)."""
        self.store.save(record)
        body = render_status(record)
        if record.status_comment_id is None:
            posted = self.forge.upsert_comment(record.config.issue, STATUS_KIND, record.run_id, body)
        else:
            posted = self.forge.edit_comment(
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

    def progress(self, record: RunRecord) -> None:
        (self.folder / "status.md").write_text(with_marker(render_status(record), "local", record.run_id))
        data = default_redactor().redact_obj(record.model_dump(mode="json"))
        (self.folder / "run.json").write_text(json.dumps(data, indent=2) + "\n")
        if self.on_progress:
            self.on_progress(record)
