"""The status comment: one per run, edited in place (queued → running → done / failed / cancelled).

Pure rendering; `bot.github.forge` posts it. The hidden marker carries the run id so a retried job
finds and edits its comment instead of posting a second one.
"""

from __future__ import annotations

from bot.github.markers import with_marker
from bot.runs import NodeState, RunRecord, RunState
from bot.triggers import Role
from bot.workflow.report import nodes_table

STATUS_KIND = "status"

_HEADLINE = {
    RunState.QUEUED: "⏳ **Queued**: waiting for a worker.",
    RunState.RUNNING: "🏃 **Running**.",
    RunState.WAITING: "✋ **Waiting for approval** of the plan.",
    RunState.DONE: "✅ **Done**.",
    RunState.FAILED: "❌ **Failed**.",
    RunState.CANCELLED: "🛑 **Cancelled**.",
}

RETRY_HINT = "Comment `/archon retry` to run it again (or re-apply the label)."
EVALUATION_FAILED = (
    "⚠️ **The evaluation failed:** {reason}. The [pull request]({url}) stands; comment "
    "`/archon evaluate` on the pull request to redo it."
)
RESUME_HINT = "Comment `/archon retry` to resume from `{node}`, keeping the work done before it."


def _models_table(record: RunRecord) -> list[str]:
    rows = ["| Role | Model | Provider |", "| --- | --- | --- |"]
    for role in Role:
        model = record.config.models[role]
        rows.append(f"| {role} | `{model.alias}` ({model.spec.model}) | {model.spec.provider} |")
    return rows


def render_status(record: RunRecord) -> str:
    """Markdown body of the status comment for the run's current state."""
    lines = [
        f"### Archon run `{record.run_id}` — {record.config.pairing()}",
        "",
        _HEADLINE[record.state],
        "",
        f"Requested by @{record.requested_by} via {record.trigger}; workflow `{record.config.workflow}`.",
        "",
        *_models_table(record),
    ]
    if record.nodes:
        lines += ["", *nodes_table(record)]
    if record.summary:
        lines += ["", record.summary]
    if note := _evaluation_note(record):
        lines += ["", note]
    if record.state is RunState.FAILED:
        lines += ["", f"**Reason:** {record.error or 'unknown error'}", "", _retry_hint(record)]
    return with_marker("\n".join(lines), STATUS_KIND, record.run_id)


def _evaluation_note(record: RunRecord) -> str | None:
    """A done run whose evaluate node failed: its pull request stands, the evaluation can be redone."""
    if record.state is not RunState.DONE or record.pr_number is None or not record.pr_url:
        return None
    for node in record.nodes.values():
        if node.kind == "evaluate" and node.state is NodeState.FAILED:
            reason = (node.error or "unknown error").rstrip(".")
            return EVALUATION_FAILED.format(reason=reason, url=record.pr_url)
    return None


def _retry_hint(record: RunRecord) -> str:
    if record.failed_node:
        return RESUME_HINT.format(node=record.failed_node)
    return RETRY_HINT


def render_runs_table(records: list[RunRecord]) -> str:
    """The reply to `/archon status`."""
    if not records:
        return "No Archon runs on this issue yet."
    rows = ["| Run | Pairing | State | Requested by | Status |", "| --- | --- | --- | --- | --- |"]
    for r in records:
        link = f"[comment]({r.status_comment_url})" if r.status_comment_url else "—"
        rows.append(f"| `{r.run_id}` | {r.config.pairing()} | {r.state} | @{r.requested_by} | {link} |")
    return "\n".join(rows)


def render_revisions(record: RunRecord) -> str:
    """The reply to `/archon status` on the run's pull request: its revisions, oldest first."""
    if not record.revisions:
        return "No revisions yet: comment `/archon revise <feedback>` to ask for one."
    rows = [
        "| Revision | Kind | Asked by | Via | State | Cost | Commit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in record.revisions:
        commit = f"`{r.commit[:7]}`" if r.commit else "—"
        rows.append(
            f"| {r.number} | {r.kind} | @{r.requested_by} | {r.via} | {r.state} | "
            f"${r.cost_usd:.4f} | {commit} |"
        )
    return "\n".join(rows)
