"""What a benchmark shows people: JSON for machines, the issue comment's markdown (tables and a Mermaid
quality-against-cost chart GitHub renders), and a standalone HTML page around the PNG chart. Pure.

Money is written without `$` in markdown: two dollar signs on one line turn GitHub markdown into math.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.bench.aggregate import (
    QUALITY_THRESHOLD,
    BenchSummary,
    FailedCell,
    PairingSummary,
    Stat,
    Verdict,
    headline,
    verdict,
)
from bot.bench.results import DIMENSIONS, CellResult

Table = tuple[list[str], list[list[str]]]
REASON_LIMIT = 300
NO_VALUE = "—"
CELL_RULES = (
    "Scores, costs, tokens and times are means over finished cells; failed cells are listed, not scored. "
    "Total USD and the reliability counts cover every cell. Input counts all prompt tokens, Cached the part "
    "read from the prompt cache."
)
VERDICT_RULES = (
    f"Best value: the most score per dollar among pairings within {QUALITY_THRESHOLD:.0%} of the "
    "reference's score. Within the noise: the mean totals differ by at most two combined standard errors."
)
SAME_MODEL_REFERENCE = "the most expensive pairing that uses one model for both roles."
TOP_SCORE_REFERENCE = "the highest-scoring pairing, as no pairing with one model for both roles finished."


class BenchReport(BaseModel):
    """The JSON document: `BenchReport.model_validate(bench_json(...))` gives the models back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    headline: str
    reference: str | None
    best_value: str | None
    within_noise: bool | None
    summary: BenchSummary
    cells: list[CellResult]


def bench_json(summary: BenchSummary, results: Iterable[CellResult]) -> dict:
    found = verdict(summary)
    return BenchReport(
        headline=headline(summary),
        reference=found.reference.code if found else None,
        best_value=found.best.code if found else None,
        within_noise=found.within_noise if found else None,
        summary=summary,
        cells=list(results),
    ).model_dump(mode="json")


def bench_markdown(summary: BenchSummary) -> str:
    """The issue comment: headline, overall tables, the chart, per-issue tables, failed cells, the rules."""
    found = verdict(summary)
    lines = [f"## Archon bench: {summary.spec.repo}", "", f"**{headline(summary)}**", "", _scope(summary), ""]
    for table in _tables(summary.pairings, found, summary.out_of):
        lines += [*_markdown_table(table), ""]
    if chart := mermaid_chart(summary):
        lines += [chart, ""]
    lines += ["<details><summary>Per issue</summary>", ""]
    for issue in summary.issues:
        lines += [f"#### #{issue.issue}", ""]
        for table in _tables(issue.pairings, None, summary.out_of):
            lines += [*_markdown_table(table), ""]
    lines += ["</details>", ""]
    if failures := summary.failures:
        items = (f"- {html.escape(_failure(f, summary), quote=False)}" for f in failures)
        lines += ["### Failed cells", "", *items, ""]
    lines.append(f"<sub>{_rules(found)}</sub>")
    return "\n".join(lines) + "\n"


def bench_html(summary: BenchSummary, png_name: str) -> str:
    """A standalone page: headline, the chart (`png_name`, next to the page) and every table."""
    found = verdict(summary)
    title = html.escape(f"Archon bench: {summary.spec.repo}")
    body = [
        f"<h1>{title}</h1>",
        f"<p><strong>{html.escape(headline(summary))}</strong></p>",
        f"<p>{html.escape(_scope(summary))}</p>",
        f'<img src="{html.escape(png_name)}" alt="Mean score against mean cost per pairing">',
        "<h2>All issues</h2>",
        *(_html_table(table) for table in _tables(summary.pairings, found, summary.out_of)),
    ]
    for issue in summary.issues:
        body += [
            f"<h2>Issue #{issue.issue}</h2>",
            *(_html_table(t) for t in _tables(issue.pairings, None, summary.out_of)),
        ]
    if failures := summary.failures:
        items = "".join(f"<li>{html.escape(_failure(f, summary))}</li>" for f in failures)
        body += ["<h2>Failed cells</h2>", f"<ul>{items}</ul>"]
    body.append(f"<p><small>{html.escape(_rules(found))}</small></p>")
    return _PAGE.format(title=title, body="\n".join(body))


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


# --- the chart ---------------------------------------------------------------------------------------------


def mermaid_chart(summary: BenchSummary) -> str | None:
    """A `quadrantChart` of mean score against mean cost per finished pairing; None if none finished.
    Mermaid wants coordinates in [0, 1]: x is cost over the highest mean cost, y is score over the maximum."""
    finished = [p for p in summary.pairings if p.total is not None and p.cost_usd is not None]
    if not finished:
        return None
    top = max(_mean(p.cost_usd) for p in finished)
    lines = [
        "```mermaid",
        "quadrantChart",
        "    title Mean score against mean cost per cell",
        f"    x-axis Cost 0 USD --> {top:.2f} USD",
        f"    y-axis Score 0 --> {summary.out_of}",
        "    quadrant-1 Strong, costly",
        "    quadrant-2 Strong, cheap",
        "    quadrant-3 Weak, cheap",
        "    quadrant-4 Weak, costly",
    ]
    for p in finished:
        x = _mean(p.cost_usd) / top if top else 0.0
        lines.append(f"    {_point_name(p.code)}: [{_unit(x)}, {_unit(_mean(p.total) / summary.out_of)}]")
    return "\n".join([*lines, "```"])


def _unit(value: float) -> str:
    """Mermaid's lexer accepts only `1`, `0` and `0.<digits>`."""
    value = round(min(max(value, 0.0), 1.0), 3)
    return "1" if value == 1 else "0" if value == 0 else f"{value:.3f}"


def _point_name(code: str) -> str:
    return re.sub(r"[^A-Za-z0-9/._-]", "-", code)


# --- tables ------------------------------------------------------------------------------------------------


def _tables(pairings: list[PairingSummary], found: Verdict | None, out_of: int) -> list[Table]:
    """The quality table and the cost-and-reliability table: one row per pairing each."""
    quality = ["Pairing", "Plan", "Implement", f"Total /{out_of} (mean ± sd)", *DIMENSIONS.values()]
    quality += ["Validation", "Cells ok"]
    cost = ["Pairing", "Cost/cell USD", "Total USD", "Input", "Output", "Cached", "Time"]
    cost += ["Tool failures", "Retries", "Stalls", "Fallbacks"]
    edited = any(p.edits or p.recovered_calls for p in pairings)
    if edited:
        cost += ["Edits", "Recovered"]
    return [
        (quality, [_quality_row(p, found) for p in pairings]),
        (cost, [_cost_row(p, found) + (_edit_cells(p) if edited else []) for p in pairings]),
    ]


def edit_summary(p: PairingSummary) -> str:
    """`14 edits, 3 by a fallback, 1 refused` for one pairing (its implementer's edits, mostly)."""
    if not p.edits:
        return NO_VALUE
    parts = [f"{p.edits} edit{'' if p.edits == 1 else 's'}"]
    parts += [f"{p.edits_fallback} by a fallback"] if p.edits_fallback else []
    parts += [f"{p.edits_refused} refused"] if p.edits_refused else []
    return ", ".join(parts)


def _edit_cells(p: PairingSummary) -> list[str]:
    return [edit_summary(p), str(p.recovered_calls)]


def _quality_row(p: PairingSummary, found: Verdict | None) -> list[str]:
    dimensions = [f"{p.dimensions[d].mean:.1f}" if d in p.dimensions else NO_VALUE for d in DIMENSIONS]
    validation = f"{p.validation_passed}/{p.validated}" if p.validated else NO_VALUE
    return [_name(p, found), p.plan, p.impl, _score(p.total), *dimensions, validation, f"{p.n_ok}/{p.n}"]


def _cost_row(p: PairingSummary, found: Verdict | None) -> list[str]:
    finished = p.n_ok > 0
    prompt = p.tokens["input_tokens"] + p.tokens["cache_write_tokens"] + p.tokens["cache_read_tokens"]
    tokens = [prompt, p.tokens["output_tokens"], p.tokens["cache_read_tokens"]]
    return [
        _name(p, found),
        _money(p.cost_usd.mean) if p.cost_usd else NO_VALUE,
        _money(p.total_cost_usd),
        *(_count(t) if finished else NO_VALUE for t in tokens),
        _duration(p.wall_s.mean) if p.wall_s else NO_VALUE,
        f"{p.tool_errors}/{p.tool_calls}",
        str(p.retries),
        str(p.stalls),
        str(p.fallbacks),
    ]


def _name(p: PairingSummary, found: Verdict | None) -> str:
    marks = []
    if found and p.code == found.reference.code:
        marks.append("reference")
    if found and p.code == found.best.code:
        marks.append("★ best value")
    return f"{p.code} ({', '.join(marks)})" if marks else p.code


def _markdown_table(table: Table) -> list[str]:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- text --------------------------------------------------------------------------------------------------


def _scope(summary: BenchSummary) -> str:
    spec = summary.spec
    issues = ", ".join(f"#{i}" for i in spec.issues)
    judges = ", ".join(spec.judge) or "none recorded"
    return (
        f"Issues {issues} · plan {', '.join(spec.plan)} × implement {', '.join(spec.impl)} · "
        f"{spec.repeat} repeat{'s' if spec.repeat > 1 else ''} · {summary.n_cells} cells · judge: {judges}"
    )


def _failure(failure: FailedCell, summary: BenchSummary) -> str:
    key = failure.key
    code = next(p.code for p in summary.pairings if (p.plan, p.impl) == key.pairing)
    reason = " ".join(failure.reason.split())
    if len(reason) > REASON_LIMIT:
        reason = reason[: REASON_LIMIT - 1] + "…"
    return f"#{key.issue} · {code} (plan {key.plan}, implement {key.impl}) · repeat {key.repeat}: {reason}"


def _rules(found: Verdict | None) -> str:
    if found is None:
        return CELL_RULES
    reference = found.reference
    why = SAME_MODEL_REFERENCE if reference.plan == reference.impl else TOP_SCORE_REFERENCE
    return f"{CELL_RULES} Reference ({reference.code}): {why} {VERDICT_RULES}"


def _score(total: Stat | None) -> str:
    if total is None:
        return NO_VALUE
    return f"{total.mean:.1f} ± {total.sd:.1f}" if total.n > 1 else f"{total.mean:.1f}"


def _mean(value: Stat | None) -> float:
    assert value is not None
    return value.mean


def _money(amount: float) -> str:
    return f"{amount:.4f}" if 0 < amount < 0.01 else f"{amount:.2f}"


def _count(tokens: float) -> str:
    if tokens >= 1e6:
        return f"{tokens / 1e6:.1f}M"
    return f"{tokens / 1e3:.1f}k" if tokens >= 1e3 else f"{tokens:.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"
