"""The rubric, in one versioned place: seven dimensions, each with a question and anchors for 0, 5 and 10.

Change a word of it and `RUBRIC_VERSION` changes too, so stored evaluations stay comparable: scores are only
compared between evaluations of the same version. Fidelity is judged against the plan, so a change without
one (a human pull request) is scored on the other six, out of 60.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

RUBRIC_VERSION = "2026-11-27.1"
MAX_PER_DIMENSION = 10


class Dimension(StrEnum):
    """A dimension of the rubric, as the judge names it."""

    ROOT_CAUSE = "root_cause"
    RESOLUTION = "resolution"
    SCOPE = "scope"
    QUALITY = "quality"
    TESTING = "testing"
    CORRECTNESS = "correctness"
    FIDELITY = "fidelity"


@dataclass(frozen=True)
class Criterion:
    """How one dimension is scored: what it asks, and what 0, 5 and 10 look like."""

    title: str
    question: str
    anchors: Mapping[int, str]


def _criterion(title: str, question: str, zero: str, five: str, ten: str) -> Criterion:
    return Criterion(title, question, MappingProxyType({0: zero, 5: five, 10: ten}))


CRITERIA: Mapping[Dimension, Criterion] = MappingProxyType(
    {
        Dimension.ROOT_CAUSE: _criterion(
            "Root-cause analysis",
            "Does the plan (without one, the pull request) name the actual cause of the problem, not a "
            "symptom?",
            "No cause is named, or the named cause is wrong: the change patches the place where the symptom "
            "shows (a guard, a retry, a special case) while the defect that produces it stays.",
            "The cause is found in the right area but stated loosely or only in part: the fix works, yet a "
            "second path with the same defect goes unnoticed.",
            "The exact defect is named — file, function and condition — with why it produces the reported "
            "behaviour, and the code or a reproduction confirms it.",
        ),
        Dimension.RESOLUTION: _criterion(
            "Issue resolution",
            "Does the change do what the issue asks, completely?",
            "The request is not met: the change addresses something else, breaks the requested behaviour, "
            "or is a stub.",
            "The main case works but part of the request is missing: a second scenario, an option, or the "
            "message or documentation the issue asks for.",
            "Every point of the issue is handled, including the cases it mentions in passing; whoever filed "
            "it would close it after reading the diff.",
        ),
        Dimension.SCOPE: _criterion(
            "Scope discipline",
            "Do only the necessary files and lines change?",
            "The diff sprawls: unrelated refactors, reformatted untouched code, renamed APIs the issue did "
            "not need, or stray files (debug scripts, backups, lock or vendored files).",
            "Mostly focused, with some noise: a drive-by rename, reformatted lines, an unneeded helper or an "
            "unrelated file that is harmless but distracts the reviewer.",
            "Every changed line serves the issue: nothing a reviewer would ask to remove, nothing generated, "
            "vendored or left behind.",
        ),
        Dimension.QUALITY: _criterion(
            "Code quality",
            "Is the new code readable, idiomatic and consistent with the code around it?",
            "Hard to follow or at odds with the codebase: duplicated logic, misleading names, dead or "
            "commented-out code, the project's conventions (errors, typing, logging) ignored.",
            "Works and reads acceptably, with rough edges: a long function, a magic value, a needless "
            "abstraction, or a style unlike the neighbouring code.",
            "Reads like the best of the surrounding code: clear names, the project's helpers and idioms "
            "reused, no duplication, comments only where they explain why.",
        ),
        Dimension.TESTING: _criterion(
            "Testing and validation",
            "Do tests fail before the change and pass after it, and is there evidence that validation ran?",
            "No test covers the change, or the tests pass with or without it; no sign that the suite or any "
            "check was run.",
            "A test exercises the main case, but edge cases are missing or it is unclear it would fail "
            "without the change; validation ran, but its result is only partly shown.",
            "Focused tests reproduce the issue — failing before, passing after — and cover its edge cases; "
            "the validation output shows the whole suite passing.",
        ),
        Dimension.CORRECTNESS: _criterion(
            "Subtle correctness",
            "Is the change correct at the edges: empty and boundary inputs, error paths, concurrency and "
            "async behaviour, resource handling?",
            "A real defect is introduced or left: an unhandled None or empty case, a swallowed or wrong "
            "exception, a race, a missing await, a leaked file, lock or connection.",
            "No evident defect on the main path, but an edge is not considered: an error path that logs and "
            "carries on, an unchecked boundary, cleanup that is not guaranteed.",
            "The edges are handled on purpose: boundaries and empty inputs, errors raised or reported "
            "precisely, ordering and cancellation safe, resources released on every path.",
        ),
        Dimension.FIDELITY: _criterion(
            "Plan–implementation fidelity",
            "Does the diff follow the plan, with every deviation explained?",
            "The diff ignores the plan: other files or another approach, planned steps missing, and no word "
            "on why.",
            "The plan's approach is followed, but steps are skipped or changed, or files the plan does not "
            "name appear, with little or no explanation.",
            "Every planned step is in the diff and nothing more; any deviation is small, necessary and "
            "explained (in the pull request, a commit message or a comment).",
        ),
    }
)


def dimensions(has_plan: bool) -> tuple[Dimension, ...]:
    """The dimensions scored: all seven, or six without fidelity when there is no plan."""
    return tuple(d for d in Dimension if has_plan or d is not Dimension.FIDELITY)


def out_of(has_plan: bool) -> int:
    """The highest possible total: 70 with a plan, 60 without."""
    return MAX_PER_DIMENSION * len(dimensions(has_plan))


def rubric_text(has_plan: bool) -> str:
    """The rubric as markdown, for the judge's prompt (which gives it a heading with `RUBRIC_VERSION`)."""
    lines = [
        f"Score each dimension with a whole number from 0 to {MAX_PER_DIMENSION}. The anchors describe 0, 5 "
        "and 10; give the numbers between to work that falls between them. Each score needs a rationale of "
        "one or two sentences and at least one piece of evidence.",
    ]
    for dimension in dimensions(has_plan):
        criterion = CRITERIA[dimension]
        lines += ["", f"## `{dimension}` — {criterion.title}", "", criterion.question, ""]
        lines += [f"- **{score}:** {text}" for score, text in criterion.anchors.items()]
    if not has_plan:
        lines += [
            "",
            f"There is no plan for this change, so `{Dimension.FIDELITY}` is not scored: do not submit it. "
            f"The total is out of {out_of(False)}.",
        ]
    return "\n".join(lines) + "\n"


def format_points(value: float) -> str:
    """A score or total as people read it: `8`, `8.5`, `52.3`."""
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"
