"""The evaluation as a pull request review: inline comments anchored on the diff, and the review body.

Pure. GitHub accepts a review comment only on a line the diff shows; on the RIGHT side (the new file) those
are added and context lines inside a hunk — the same rule as the fake's `commentable_lines`. A comment on
any other line cannot be posted inline, so it is listed in the body instead of being lost. A comment's
suggested replacement becomes a ```` ```suggestion ```` block only where GitHub can apply it (`anchor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from unidiff import PatchSet

from bot.evaluation.rubric import CRITERIA, Dimension, format_points, out_of
from bot.evaluation.schema import SUGGESTION_MAX_LINES, DimensionResult, Evaluation, InlineComment
from bot.evaluation.signals import Signals
from bot.secrets import Redactor, default_redactor

GITHUB_BODY_LIMIT = 65_536
BODY_LIMIT = 60_000
"""Our budget for the body: GitHub's limit less room for the marker `post_review` appends."""
SUMMARY_LIMIT = 8_000
RATIONALE_LIMIT = 400
COMMENT_LIMIT = 4_000
LEFTOVER_LIMIT = 15_000
FLAG_LIMIT = 1_000
LISTED_FILES = 20
SUGGESTION_CHAR_LIMIT = 6_000
SUGGESTION_LEFT_OUT = "<sub>A suggested change for these lines was left out: {reason}.</sub>"
NOT_IN_DIFF = "not every line it replaces is an added or context line of one diff hunk"
TOO_LONG = f"it is longer than {SUGGESTION_MAX_LINES} lines or {SUGGESTION_CHAR_LIMIT:,} characters"
HAS_FENCE = "it contains a code fence (```), which would break the suggestion block"
UNCHANGED = "it is the same as the current lines"
HAS_SECRET = "it contains a value that looks like a secret"
OVERLAPS = "another suggested change already covers some of these lines"
UNPLACED_SUGGESTION = " *(Its suggested change is not shown: those lines are not in the diff.)*"
BLIND_NOTE = "Judging was blind: the judges were not told which models planned or implemented this change."


Hunk = dict[int, str]
"""The new file's lines one hunk shows (added and context): line number → text."""


def right_side_hunks(diff_text: str) -> dict[str, list[Hunk]]:
    """path → each of its hunks, in order."""
    files: dict[str, list[Hunk]] = {}
    for patched in PatchSet(diff_text):
        files.setdefault(patched.path, []).extend(
            {n: line.value.rstrip("\r\n") for line in hunk if (n := line.target_line_no) is not None}
            for hunk in patched
        )
    return files


def right_side_lines(diff_text: str) -> dict[str, set[int]]:
    """path → the new file's line numbers the diff shows (added and context lines)."""
    return {path: set().union(*hunks) for path, hunks in right_side_hunks(diff_text).items()}


def anchor(
    comments: Iterable[InlineComment], diff_text: str, redactor: Redactor | None = None
) -> tuple[list[dict], list[InlineComment]]:
    """(review comments for `post_review`, comments whose line the diff does not show).

    A comment's `suggestion` becomes a ```` ```suggestion ```` block only when `_refusal` finds nothing
    wrong with it; otherwise the comment is posted without it, saying why. Suggestions are taken in order
    and one that overlaps a line range already given a suggestion is left out: in a panel the first
    judge's stands, and GitHub never shows two conflicting changes for the same lines."""
    files = right_side_hunks(diff_text)
    secret = (redactor or default_redactor()).contains_secret
    offered: dict[str, list[range]] = {}
    anchored, leftover = [], []
    for comment in comments:
        hunks = files.get(comment.path, [])
        if _hunk(hunks, range(comment.line, comment.line + 1)) is None:
            leftover.append(comment)
            continue
        anchored.append(_review_comment(comment, hunks, offered.setdefault(comment.path, []), secret))
    return anchored, leftover


def _hunk(hunks: Sequence[Hunk], span: range) -> Hunk | None:
    """The hunk that shows every line of `span` on the right side, or None (GitHub refuses a range
    that is not inside one hunk)."""
    return next((hunk for hunk in hunks if all(n in hunk for n in span)), None)


def _review_comment(
    comment: InlineComment, hunks: Sequence[Hunk], offered: list[range], secret: Callable[[str], bool]
) -> dict:
    span = range(comment.start_line or comment.line, comment.line + 1)
    hunk = _hunk(hunks, span)
    placed: dict = {"path": comment.path, "line": comment.line, "side": "RIGHT"}
    if hunk is not None and len(span) > 1:
        placed |= {"start_line": span.start, "start_side": "RIGHT"}
    body = _clip(comment.body, COMMENT_LIMIT)
    if comment.suggestion and comment.suggestion.strip():
        text = comment.suggestion.replace("\r\n", "\n").removesuffix("\n")
        reason = _refusal(text, hunk, span, offered, secret)
        if reason is None:
            offered.append(span)
            body += f"\n\n```suggestion\n{text}\n```"
        else:
            body += "\n\n" + SUGGESTION_LEFT_OUT.format(reason=reason)
    return {**placed, "body": body}


def _refusal(
    text: str, hunk: Hunk | None, span: range, offered: Sequence[range], secret: Callable[[str], bool]
) -> str | None:
    """Why this replacement for `span` cannot be offered as a suggested change, or None when it can."""
    lines = text.split("\n")
    if hunk is None:
        return NOT_IN_DIFF
    if max(len(lines), len(span)) > SUGGESTION_MAX_LINES or len(text) > SUGGESTION_CHAR_LIMIT:
        return TOO_LONG
    if "```" in text:
        return HAS_FENCE
    if [line.rstrip() for line in lines] == [hunk[n].rstrip() for n in span]:
        return UNCHANGED
    if secret(text):
        return HAS_SECRET
    if any(span.start < other.stop and other.start < span.stop for other in offered):
        return OVERLAPS
    return None


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
        bullet = f"- `{_place(comment)}` — {_clip(' '.join(comment.body.split()), COMMENT_LIMIT)}"
        bullet += UNPLACED_SUGGESTION if comment.suggestion and comment.suggestion.strip() else ""
        size += len(bullet) + 1
        if size > LEFTOVER_LIMIT:
            lines.append(f"- … and {len(comments) - shown} more, not shown: the review would be too long.")
            break
        lines.append(bullet)
    return "\n".join(lines)


def _place(comment: InlineComment) -> str:
    first = comment.start_line or comment.line
    return f"{comment.path}:{first}-{comment.line}" if first < comment.line else f"{comment.path}:{first}"


def _footer(evaluation: Evaluation) -> str:
    count = len(evaluation.judges)
    judges = "one judge" if count == 1 else f"{count} judges"
    return f"---\n<sub>Rubric version {evaluation.rubric_version} · {judges}. {BLIND_NOTE}</sub>"


# --- the check run -----------------------------------------------------------------------------------

CHECK_NAME = "Archon evaluation"
CHECK_SUMMARY_LIMIT = 60_000
"""GitHub's limit for a check run's `output.summary` is 65,535 characters."""
NEEDS = " (needs {min_score} to pass)"
FAILED_TITLE = "The evaluation failed"


def check_conclusion(evaluation: Evaluation, min_score: int | None) -> str:
    """`neutral` unless the repository sets `evaluation.min_score`; then `success` at or above it and
    `failure` below it (an evaluation that failed has no score, so it does not pass either)."""
    if min_score is None:
        return "neutral"
    passed = evaluation.status == "ok" and evaluation.total is not None and evaluation.total >= min_score
    return "success" if passed else "failure"


def render_check(evaluation: Evaluation, min_score: int | None) -> tuple[str, str]:
    """(title, summary) of the `Archon evaluation` check run: the score in the title, the review's
    per-dimension table and its warnings in the summary."""
    needs = NEEDS.format(min_score=min_score) if min_score is not None else ""
    if evaluation.status == "failed" or evaluation.total is None:
        return FAILED_TITLE + needs, _heading(evaluation)
    title = f"Score {format_points(evaluation.total)} / {evaluation.out_of}{needs}"
    sections = [_scores(evaluation), _flags(evaluation.flags), _footer(evaluation)]
    return title, _clip("\n\n".join(s for s in sections if s) + "\n", CHECK_SUMMARY_LIMIT)


def _clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    kept = text[: limit - len(_cut_note(len(text)))].rstrip()
    return kept + _cut_note(len(text) - len(kept))


def _cut_note(cut: int) -> str:
    return f" … *(truncated: {cut:,} more characters)*"
