"""The evaluation as a pull request review: inline comments anchored on the diff, and the review body.

Pure. GitHub accepts a review comment only on a line the diff shows; on the RIGHT side (the new file) those
are added and context lines inside a hunk — the same rule as the fake's `commentable_lines`. A comment on
any other line cannot be posted inline, so it is listed in the body instead of being lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from unidiff import PatchSet

from bot.evaluation.rubric import CRITERIA, Dimension, format_points, out_of
from bot.evaluation.schema import DimensionResult, Evaluation, InlineComment
from bot.evaluation.signals import Signals

GITHUB_BODY_LIMIT = 65_536
BODY_LIMIT = 60_000
"""Our budget for the body: GitHub's limit less room for the marker `post_review` appends."""
SUMMARY_LIMIT = 8_000
RATIONALE_LIMIT = 400
COMMENT_LIMIT = 4_000
LEFTOVER_LIMIT = 15_000
FLAG_LIMIT = 1_000
LISTED_FILES = 20
BLIND_NOTE = "Judging was blind: the judges were not told which models planned or implemented this change."


def right_side_lines(diff_text: str) -> dict[str, set[int]]:
    """path → the new file's line numbers the diff shows (added and context lines)."""
    lines: dict[str, set[int]] = {}
    for patched in PatchSet(diff_text):
        shown = lines.setdefault(patched.path, set())
        for hunk in patched:
            shown.update(line.target_line_no for line in hunk if line.target_line_no is not None)
    return lines


def anchor(comments: Iterable[InlineComment], diff_text: str) -> tuple[list[dict], list[InlineComment]]:
    """(review comments for `post_review`, comments whose line the diff does not show)."""
    shown = right_side_lines(diff_text)
    anchored, leftover = [], []
    for comment in comments:
        if comment.line in shown.get(comment.path, ()):
            body = _clip(comment.body, COMMENT_LIMIT)
            anchored.append({"path": comment.path, "line": comment.line, "side": "RIGHT", "body": body})
        else:
            leftover.append(comment)
    return anchored, leftover


def render_review(
    evaluation: Evaluation, leftover: Sequence[InlineComment], validation: str | None = None
) -> str:
    """The review body, in markdown, within GitHub's size limit. `validation`: the commands run on the merge
    base and on the change, with their summaries, and the fix proof (`baseline.render_markdown`)."""
    sections = [
        _heading(evaluation),
        _scores(evaluation),
        _flags(evaluation.flags),
        _summary(evaluation),
        _signals(evaluation.signals),
        f"### Validation, measured\n\n{validation.rstrip()}" if validation else "",
        _leftover(leftover),
        _footer(evaluation),
    ]
    return _clip("\n\n".join(s for s in sections if s) + "\n", BODY_LIMIT)


def _heading(evaluation: Evaluation) -> str:
    if evaluation.status == "failed" or evaluation.total is None:
        reason = _clip(" ".join((evaluation.error or "unknown error").split()), SUMMARY_LIMIT).rstrip(".")
        return f"## Archon evaluation\n\nThe evaluation failed: {reason}. No scores were given."
    return f"## Archon evaluation: **{format_points(evaluation.total)} / {evaluation.out_of}**"


def _scores(evaluation: Evaluation) -> str:
    if evaluation.status == "failed":
        return ""
    panel = len(evaluation.judges) > 1
    rows = ["| Dimension | Score | Rationale |", "| --- | --- | --- |"]
    results = {result.dimension: result for result in evaluation.dimensions}
    for dimension in Dimension:
        title = CRITERIA[dimension].title
        if dimension in results:
            result = results[dimension]
            rows.append(f"| {title} | {_score(result, panel)} | {_rationale(result, evaluation.judges)} |")
        elif dimension is Dimension.FIDELITY and not evaluation.has_plan:
            rows.append(f"| {title} | n/a (no plan) | — |")
    if not evaluation.has_plan:
        rows += [
            "",
            f"There was no plan for this change, so plan–implementation fidelity is not scored and the total "
            f"is out of {out_of(False)}.",
        ]
    return "\n".join(rows)


def _score(result: DimensionResult, panel: bool) -> str:
    mean = format_points(result.mean)
    return f"{mean} ± {result.spread}" if panel else mean


def _rationale(result: DimensionResult, judges: Sequence[str]) -> str:
    texts = [_cell(score.rationale) for score in result.scores]
    if len(texts) == 1:
        return texts[0]
    return "<br>".join(f"*{label}:* {text}" for label, text in zip(judges, texts, strict=False))


def _cell(text: str) -> str:
    return _clip(" ".join(text.split()), RATIONALE_LIMIT).replace("|", "\\|")


def _flags(flags: Sequence[str]) -> str:
    if not flags:
        return ""
    lines = [
        "> [!WARNING]",
        "> **Worth a second look: the scores disagree with each other or with the measurements.**",
    ]
    return "\n".join(lines + [f"> - {_clip(' '.join(flag.split()), FLAG_LIMIT)}" for flag in flags])


def _summary(evaluation: Evaluation) -> str:
    summaries = [_clip(text.strip(), SUMMARY_LIMIT) for text in evaluation.summaries]
    if not summaries:
        return ""
    if len(summaries) == 1:
        return f"### Summary\n\n{summaries[0]}"
    labelled = [f"**{label}:** {text}" for label, text in zip(evaluation.judges, summaries, strict=False)]
    return "### Summary\n\n" + "\n\n".join(labelled)


def _signals(signals: Signals) -> str:
    touched = len(signals.files_touched)
    if signals.has_plan:
        files = (
            f"{touched} touched — planned: {_files(signals.planned)}; unplanned: "
            f"{_files(signals.unplanned or [])}; missed: {_files(signals.missed)}"
        )
    else:
        files = f"{touched} touched (no plan to compare them with)"
    generated = [f"`{path}` ({kind})" for path, kind in signals.generated.items()]
    lines = [
        "### Measured without a model",
        "",
        f"- **Files:** {files}",
        f"- **Lines:** +{signals.lines_added} / −{signals.lines_removed}",
        f"- **Tests added or changed:** {_files(signals.tests_changed)}",
        f"- **Lock, vendored or generated:** {_listed(generated)}",
        f"- **Binary files:** {_files(signals.binary_files)}",
        f"- **Validation:** {_passed(signals.validation_before)} → {_passed(signals.validation_after)}",
    ]
    if signals.fix_proof:
        lines.append(f"- **Fix proof:** {signals.fix_proof}")
    if signals.pre_existing_failures:
        shown = ", ".join(f"`{t}`" for t in signals.pre_existing_failures[:5])
        lines.append(f"- **Already failing on the base branch (not the change's doing):** {shown}")
    return "\n".join(lines)


def _files(paths: Sequence[str]) -> str:
    return _listed([f"`{path}`" for path in paths])


def _listed(items: Sequence[str]) -> str:
    if not items:
        return "none"
    more = len(items) - LISTED_FILES
    return ", ".join(items[:LISTED_FILES]) + (f" and {more} more" if more > 0 else "")


def _passed(result: bool | None) -> str:
    return "not run" if result is None else "passed" if result else "failed"


def _leftover(comments: Sequence[InlineComment]) -> str:
    if not comments:
        return ""
    lines = [
        "### Comments not placed on the diff",
        "",
        "These point at lines the diff does not show, so they could not be posted inline.",
        "",
    ]
    size = 0
    for shown, comment in enumerate(comments):
        bullet = f"- `{comment.path}:{comment.line}` — {_clip(' '.join(comment.body.split()), COMMENT_LIMIT)}"
        size += len(bullet) + 1
        if size > LEFTOVER_LIMIT:
            lines.append(f"- … and {len(comments) - shown} more, not shown: the review would be too long.")
            break
        lines.append(bullet)
    return "\n".join(lines)


def _footer(evaluation: Evaluation) -> str:
    count = len(evaluation.judges)
    judges = "one judge" if count == 1 else f"{count} judges"
    return f"---\n<sub>Rubric version {evaluation.rubric_version} · {judges}. {BLIND_NOTE}</sub>"


def _clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    kept = text[: limit - len(_cut_note(len(text)))].rstrip()
    return kept + _cut_note(len(text) - len(kept))


def _cut_note(cut: int) -> str:
    return f" … *(truncated: {cut:,} more characters)*"
