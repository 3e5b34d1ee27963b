"""The judge's tool arguments and the stored evaluation: pydantic models, the single source of truth.

`SubmitEvaluation` is the `submit_evaluation` tool: `ToolSpec.from_args` derives its schema (the docstring
is the tool's description) and `validate_submission` checks a call against it and against the run — one
score per expected dimension, fidelity only when there is a plan. A score is never defaulted: a bad call
raises `SubmissionError`, whose message tells the model what to fix.

Evidence is either a place in the change, `path:LINE` or `path:START-END` (a repository-relative path
without spaces or colons; lines counted from 1, START ≤ END), or a whole source: `plan`, `issue` or
`validation` (the validation output).

An inline comment may carry a `suggestion`, the replacement for its lines; `bot.evaluation.review`
decides whether it can be offered as a GitHub suggested change (the lines in one diff hunk, a valid
replacement), so a doubtful suggestion costs the judge nothing but the suggestion.

`combine` turns a panel of submissions (one judge or more) into an `Evaluation`: the mean and spread of
each dimension, and warnings where judges disagree or the measured signals contradict the scores. `failed`
records an evaluation without scores.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Sequence
from statistics import fmean
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bot.evaluation import rubric
from bot.evaluation.rubric import CRITERIA, MAX_PER_DIMENSION, RUBRIC_VERSION, Dimension
from bot.evaluation.signals import Signals, disagreements

EVIDENCE_SOURCES = ("plan", "issue", "validation")
EVIDENCE_PATTERN = r"^(?:plan|issue|validation|[^\s:/][^\s:]*:[1-9][0-9]*(?:-[1-9][0-9]*)?)$"
RATIONALE_MAX = 800
SPREAD_WARNING = 4
"""Judges whose scores for one dimension differ by this much or more are flagged."""
SUGGESTION_MAX_LINES = 40
"""The longest replacement (and line range) a suggested change may have; longer ones are not offered."""

_EVIDENCE = re.compile(EVIDENCE_PATTERN)
_DIMENSIONS = frozenset(d.value for d in Dimension)


def _check_evidence(value: str) -> str:
    match = _EVIDENCE.match(value)
    start, _, end = value.rpartition(":")[2].partition("-")
    if not match or (end and int(end) < int(start)):
        raise ValueError(
            "evidence must be `path:LINE` or `path:START-END` (a file in the repository, lines from 1, "
            f"START ≤ END) or one of {', '.join(EVIDENCE_SOURCES)}"
        )
    return value


Evidence = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": EVIDENCE_PATTERN},
        description="`path:LINE` or `path:START-END` in the change, or `plan`, `issue` or `validation`.",
    ),
    AfterValidator(_check_evidence),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DimensionScore(_Model):
    """One dimension's score, the reason for it, and where to see it."""

    dimension: Dimension
    score: int = Field(
        ge=0, le=MAX_PER_DIMENSION, strict=True, description="A whole number from 0 to 10, by the anchors."
    )
    rationale: Annotated[Text, StringConstraints(max_length=RATIONALE_MAX)] = Field(
        description="Why this score, in one or two sentences."
    )
    evidence: list[Evidence] = Field(min_length=1, description="At least one place that supports the score.")


class InlineComment(_Model):
    """A review comment on a line (or a range of lines) of the new version of a file, optionally with a
    replacement for those lines that the author can apply with one click."""

    path: Text = Field(description="The file's path in the repository, as the diff names it.")
    line: int = Field(
        ge=1,
        description="A line of the new file the diff shows (added or context); for a range, its last line.",
    )
    start_line: int | None = Field(
        None,
        ge=1,
        description="For a comment on several lines: the range's first line (≤ line), in the same diff hunk.",
    )
    body: Text = Field(description="The comment, in markdown. Do not put the replacement code here.")
    suggestion: str | None = Field(
        None,
        description=(
            "Optional: the exact new text for lines start_line..line (or just `line`), whole lines with "
            "their indentation, without a code fence, at most "
            f"{SUGGESTION_MAX_LINES} lines. It becomes a suggested change the author can apply, but only "
            "when every line of the range is an added or context line of one diff hunk and the text "
            "differs from those lines; otherwise the comment is posted without it. Leave it out when you "
            "have no concrete replacement."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> InlineComment:
        if self.start_line is not None and self.start_line > self.line:
            raise ValueError(f"start_line ({self.start_line}) must not be after line ({self.line})")
        return self


class SubmitEvaluation(_Model):
    """Submit your evaluation of the change: exactly one score per rubric dimension, each with a short
    rationale and evidence, then a summary, and optionally comments on lines the diff shows — a comment
    may carry a `suggestion`, the replacement text for its lines, when you have a concrete fix. Call it
    once, when you can score every dimension."""

    scores: list[DimensionScore] = Field(description="One entry for each dimension the rubric lists.")
    summary: Text = Field(description="The overall verdict for the reviewer, in a short paragraph.")
    comments: list[InlineComment] = Field(
        default_factory=list, description="Specific points tied to lines of the diff; may be empty."
    )


class SubmissionError(ValueError):
    """The judge's arguments cannot be accepted; the message says what to fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("submit_evaluation was not accepted:\n" + "\n".join(f"- {p}" for p in problems))


def validate_submission(
    data: dict[str, Any] | str, has_plan: bool, known_files: Collection[str] | None = None
) -> SubmitEvaluation:
    """The tool call's arguments (JSON text or parsed), checked for this run, or a `SubmissionError`.

    `known_files`: the files of the change and of the repository; evidence naming any other file is
    refused, so the repair attempt points at something that exists. None: not known (no check)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise SubmissionError([f"the arguments are not valid JSON: {error.msg} ({where})"]) from None
    if not isinstance(data, dict):
        raise SubmissionError([f"the arguments must be a JSON object, not {type(data).__name__}"])
    scores = data.get("scores")
    given = [s.get("dimension") for s in scores if isinstance(s, dict)] if isinstance(scores, list) else None
    problems = [] if given is None else _dimension_problems([d for d in given if d in _DIMENSIONS], has_plan)
    try:
        submission = SubmitEvaluation.model_validate(data)
    except ValidationError as error:
        raise SubmissionError(_field_problems(error, data) + problems) from None
    problems += _unknown_files(submission, known_files)
    if problems:
        raise SubmissionError(problems)
    return submission


def _unknown_files(submission: SubmitEvaluation, known: Collection[str] | None) -> list[str]:
    if known is None:
        return []
    problems = []
    for score in submission.scores:
        for item in score.evidence:
            path = item.rsplit(":", 1)[0] if ":" in item else None
            if path is not None and path not in known:
                problems.append(
                    f"scores.{score.dimension}: evidence `{item}` names `{path}`, which is neither in the "
                    "change nor in the repository; cite a diff file (path:line), plan, issue or validation"
                )
    return problems


def _dimension_problems(given: Sequence[str], has_plan: bool) -> list[str]:
    expected = rubric.dimensions(has_plan)
    counts = Counter(given)
    missing = [d for d in expected if not counts[d]]
    duplicated = [d for d in expected if counts[d] > 1]
    problems = []
    if missing:
        problems.append(
            f"missing scores for {_names(missing)}: give exactly one score for each of {_names(expected)}"
        )
    if duplicated:
        problems.append(
            f"more than one score for {_names(duplicated)}: give each dimension exactly one score"
        )
    if not has_plan and counts[Dimension.FIDELITY]:
        problems.append(
            "unexpected score for fidelity: this change has no plan, so fidelity is not scored — leave it out"
        )
    return problems


def _names(dimensions: Sequence[str]) -> str:
    return ", ".join(str(d) for d in dimensions)


def _field_problems(error: ValidationError, data: dict[str, Any]) -> list[str]:
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        got = (
            f" (got {value!r})"
            if isinstance(value, str | int | float | bool) and len(repr(value)) < 80
            else ""
        )
        problems.append(f"{_location(item['loc'], data)}: {message}{got}")
    return problems


def _location(loc: Sequence[str | int], data: dict[str, Any]) -> str:
    """`scores[2] (testing).score`: the field's path, with the dimension a score entry names."""
    text = ""
    for i, part in enumerate(loc):
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
        if i == 1 and loc[0] == "scores" and isinstance(part, int):
            entry = data["scores"][part]
            if isinstance(entry, dict) and entry.get("dimension") in _DIMENSIONS:
                text += f" ({entry['dimension']})"
    return text or "arguments"


# --- the stored evaluation ------------------------------------------------------------------------------


class DimensionResult(_Model):
    """One dimension across the panel."""

    dimension: Dimension
    mean: float = Field(description="The mean of the judges' scores, to two decimals.")
    spread: int = Field(ge=0, description="Highest minus lowest score; 0 for one judge.")
    scores: list[DimensionScore] = Field(min_length=1, description="Each judge's score, in judge order.")


class Evaluation(_Model):
    """One evaluation of a change, as stored and rendered. `status` "failed" has no scores at all."""

    rubric_version: str = RUBRIC_VERSION
    has_plan: bool
    judges: list[str] = Field(description='Opaque labels ("judge-1", …); the judges never see model names.')
    judge_models: list[str] = Field(description="Which model alias judged, per label, for the record only.")
    dimensions: list[DimensionResult] = Field(default_factory=list)
    summaries: list[str] = Field(default_factory=list, description="Each judge's summary, in judge order.")
    comments: list[InlineComment] = Field(default_factory=list)
    total: float | None = Field(None, description="The sum of the means, to one decimal; None when failed.")
    out_of: int
    signals: Signals
    flags: list[str] = Field(default_factory=list, description="Where judges or measurements disagree.")
    status: Literal["ok", "failed"]
    error: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Evaluation:
        if len(self.judges) != len(self.judge_models):
            raise ValueError("judges and judge_models must have one entry per judge")
        if self.status == "failed" and (self.error is None or self.dimensions or self.total is not None):
            raise ValueError("a failed evaluation has an error and no scores")
        if self.status == "ok" and (self.error is not None or not self.dimensions or self.total is None):
            raise ValueError("an ok evaluation has scores and a total, and no error")
        return self

    def means(self) -> dict[Dimension, float]:
        return {result.dimension: result.mean for result in self.dimensions}


def judge_labels(count: int) -> list[str]:
    return [f"judge-{n}" for n in range(1, count + 1)]


def combine(
    submissions: Sequence[SubmitEvaluation], has_plan: bool, judge_models: Sequence[str], signals: Signals
) -> Evaluation:
    """A panel's submissions (in judge order) as one evaluation: means, spreads, comments and flags."""
    if not submissions or len(submissions) != len(judge_models):
        raise ValueError("combine needs at least one submission and one judge model per submission")
    for submission in submissions:
        if problems := _dimension_problems([s.dimension for s in submission.scores], has_plan):
            raise SubmissionError(problems)
    labels = judge_labels(len(submissions))
    results = [_result(d, submissions) for d in rubric.dimensions(has_plan)]
    total = sum(fmean(s.score for s in result.scores) for result in results)
    panel = len(submissions) > 1
    comments = [
        c.model_copy(update={"body": f"**{label}:** {c.body}"}) if panel else c
        for label, submission in zip(labels, submissions, strict=True)
        for c in submission.comments
    ]
    return Evaluation(
        has_plan=has_plan,
        judges=labels,
        judge_models=list(judge_models),
        dimensions=results,
        summaries=[s.summary for s in submissions],
        comments=comments,
        total=round(total, 1),
        out_of=rubric.out_of(has_plan),
        signals=signals,
        flags=_panel_flags(results) + disagreements({r.dimension: r.mean for r in results}, signals),
        status="ok",
    )


def _result(dimension: Dimension, submissions: Sequence[SubmitEvaluation]) -> DimensionResult:
    scores = [next(s for s in submission.scores if s.dimension == dimension) for submission in submissions]
    points = [s.score for s in scores]
    return DimensionResult(
        dimension=dimension, mean=round(fmean(points), 2), spread=max(points) - min(points), scores=scores
    )


def _panel_flags(results: Sequence[DimensionResult]) -> list[str]:
    return [
        f"The judges disagree on {CRITERIA[r.dimension].title}: "
        f"{', '.join(str(s.score) for s in r.scores)} (spread {r.spread})."
        for r in results
        if r.spread >= SPREAD_WARNING
    ]


def failed(error: str, has_plan: bool, signals: Signals, judge_models: Sequence[str]) -> Evaluation:
    """An evaluation whose judging failed (after its repair attempt): the reason, the signals, no scores."""
    return Evaluation(
        has_plan=has_plan,
        judges=judge_labels(len(judge_models)),
        judge_models=list(judge_models),
        out_of=rubric.out_of(has_plan),
        signals=signals,
        status="failed",
        error=error.strip() or "no reason was given",
    )
