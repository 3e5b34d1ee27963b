"""What a run shows people, as markdown: the node table, the pull request's title and body. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from bot.agent.ledger import ProviderStats
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


def tool_summary(stats: Iterable[ProviderStats], who: str = "") -> str:
    """How tool calls and edits went (a node's, or a pairing's), e.g. `kimi: 14 edits, 3 by a fallback,
    1 refused; 31 tool calls, 2 refused, 1 recovered`; `—` when there were none."""
    total = sum(stats, ProviderStats())
    if not total.tool_calls and not total.recovered_calls:
        return "—"
    edits = [_plural(total.edits, "edit")] if total.edits else []
    edits += [f"{total.edits_fallback} by a fallback"] if total.edits_fallback else []
    edits += [f"{total.edits_refused} refused"] if total.edits_refused else []
    calls = [_plural(total.tool_calls, "tool call")]
    calls += [f"{total.tool_errors} refused"] if total.tool_errors else []
    calls += [f"{total.recovered_calls} recovered"] if total.recovered_calls else []
    text = "; ".join(", ".join(part) for part in (edits, calls) if part)
    return f"{who}: {text}" if who else text


def node_tools(node: NodeRun) -> str:
    """A node's tool counts per model that answered (`<br>`-separated in one table cell), so a chain's
    cheap model and its fallback are told apart; records from before per-model counts show the total."""
    if not node.models:
        return tool_summary(node.providers.values())
    parts = [tool_summary([stats], f"`{_model_name(key)}`") for key, stats in node.models.items()]
    return "<br>".join(part for part in parts if part != "—") or "—"


def _model_name(key: str) -> str:
    """`provider/model` → the model id, which already says who it is (`kimi-k2.6`, `scripted:…`)."""
    return key.partition("/")[2] or key


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def nodes_table(record: RunRecord) -> list[str]:
    """The checklist: node, model, duration, tokens, cost, and how its tool calls and edits went."""
    rows = [
        "| | Node | Model | Time | Tokens | Cost | Tools |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for node in record.nodes.values():
        attempts = f" ×{node.attempts}" if node.attempts > 1 else ""
        cost = f"${node.cost_usd:.4f}" if node.cost_usd else "—"
        rows.append(
            f"| {_ICON[node.state]} | {node.id}{attempts} | {_model(node)} | {_duration(node)} | "
            f"{_tokens(node)} | {cost} | {node_tools(node)} |"
        )
    usage = record.usage
    every = [stats for node in record.nodes.values() for stats in node.providers.values()]
    rows.append(
        f"| | **Total** | | | {usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens:,}"
        f" in / {usage.output_tokens:,} out | **${record.cost_usd:.4f}** | {tool_summary(every)} |"
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
