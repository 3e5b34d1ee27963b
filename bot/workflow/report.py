"""What a run shows people, as markdown: the node table, the pull request's title and body. Pure."""

from __future__ import annotations

from bot.runs import NodeRun, NodeState, RunRecord

_ICON = {
    NodeState.PENDING: "⬜",
    NodeState.RUNNING: "🔄",
    NodeState.DONE: "✅",
    NodeState.FAILED: "❌",
    NodeState.SKIPPED: "⏭️",
}


def _duration(node: NodeRun) -> str:
    seconds = node.duration_s
    if seconds is None:
        return "—"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _tokens(node: NodeRun) -> str:
    usage = node.usage
    if not usage.total:
        return "—"
    cached = f" ({usage.cache_read_tokens:,} cached)" if usage.cache_read_tokens else ""
    return (
        f"{usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens:,} in{cached} / "
        f"{usage.output_tokens:,} out"
    )


def _model(node: NodeRun) -> str:
    if node.model is None:
        return "—"
    answered = f" → {node.answered_by}" if node.answered_by and node.answered_by not in node.model else ""
    return f"`{node.model}`{answered}"


def nodes_table(record: RunRecord) -> list[str]:
    """The checklist: node, model, duration, tokens and cost."""
    rows = ["| | Node | Model | Time | Tokens | Cost |", "| --- | --- | --- | --- | --- | --- |"]
    for node in record.nodes.values():
        attempts = f" ×{node.attempts}" if node.attempts > 1 else ""
        cost = f"${node.cost_usd:.4f}" if node.cost_usd else "—"
        rows.append(
            f"| {_ICON[node.state]} | {node.id}{attempts} | {_model(node)} | {_duration(node)} | "
            f"{_tokens(node)} | {cost} |"
        )
    usage = record.usage
    rows.append(
        f"| | **Total** | | | {usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens:,}"
        f" in / {usage.output_tokens:,} out | **${record.cost_usd:.4f}** |"
    )
    return rows


def pull_request_title(record: RunRecord) -> str:
    title = record.issue.title if record.issue else f"issue #{record.config.issue}"
    return f"Fix #{record.config.issue}: {title}"[:250]


def pull_request_body(record: RunRecord, review: str, diff: str) -> str:
    """`Fixes #n`, the self-review's summary, the plan link, the models and the costs per node."""
    lines = [f"Fixes #{record.config.issue}", ""]
    if review.strip():
        lines += [review.strip(), ""]
    if record.plan_urls:
        lines += [f"**Plan:** {record.plan_urls[-1]}", ""]
    models = ", ".join(f"{role} `{m.alias}` ({m.spec.model})" for role, m in record.config.models.items())
    lines += [
        "<details><summary>How this was made</summary>",
        "",
        f"Archon run `{record.run_id}` · {record.config.pairing()} · workflow `{record.config.workflow}`",
        "",
        f"Models: {models}.",
        "",
        *nodes_table(record),
        *revisions_table(record),
        "",
        f"{diff.count(chr(10))} lines of diff. Archon Bot opened this draft: review it before merging.",
        "",
        "</details>",
    ]
    return "\n".join(lines)


def revisions_table(record: RunRecord) -> list[str]:
    """A row per revision asked for on the pull request (who, what, cost, commit), after the nodes."""
    if not record.revisions:
        return []
    rows = ["", "| Revision | Asked by | Feedback | Cost | Commit |", "| --- | --- | --- | --- | --- |"]
    for r in record.revisions:
        feedback = " ".join(r.feedback.split())[:80].replace("|", "\\|")
        commit = f"`{r.commit[:7]}`" if r.commit else str(r.state)
        rows.append(
            f"| {r.number} ({r.kind}) | @{r.requested_by} | {feedback} | ${r.cost_usd:.4f} | {commit} |"
        )
    return rows
