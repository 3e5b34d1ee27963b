"""The pure core of the evaluation: rubric, tool schema and submission checks, signals, anchoring, review.

The rendered reviews are compared with golden files in `tests/data/golden/`. After an intended change to
the rendering, regenerate them and read the diff before committing:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_evaluation_core.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.evaluation import rubric
from bot.evaluation.review import BODY_LIMIT, anchor, render_review, right_side_lines
from bot.evaluation.rubric import CRITERIA, RUBRIC_VERSION, Dimension, dimensions, rubric_text
from bot.evaluation.schema import (
    Evaluation,
    InlineComment,
    SubmissionError,
    SubmitEvaluation,
    combine,
    failed,
    validate_submission,
)
from bot.evaluation.signals import Signals, disagreements, files_named, is_test_path, measure
from bot.fakes.github_pulls import commentable_lines
from bot.providers.types import ToolSpec

GOLDEN = Path(__file__).parent / "data" / "golden"

CALC = '''\
diff --git a/bot/calc.py b/bot/calc.py
index 1111111..2222222 100644
--- a/bot/calc.py
+++ b/bot/calc.py
@@ -10,5 +10,7 @@ def divide(a, b):
 def divide(a, b):
     """Divide a by b."""
-    return a / b
+    if b == 0:
+        raise ZeroDivisionError("b must not be zero")
+    return a / b
 def add(a, b):
     return a + b
@@ -40,4 +42,2 @@ def legacy():
 def legacy():
-    warn()
-    return old()
     return None
'''
LOCK = """\
diff --git a/poetry.lock b/poetry.lock
index 5555555..6666666 100644
--- a/poetry.lock
+++ b/poetry.lock
@@ -1,2 +1,2 @@
 [[package]]
-name = "old"
+name = "new"
"""
LOGO = """\
diff --git a/assets/logo.png b/assets/logo.png
new file mode 100644
index 0000000..4444444
Binary files /dev/null and b/assets/logo.png differ
"""
PLAN = """\
## Root cause

`divide` in bot/calc.py divides without checking `b`; see also `bot/other.py` for context.

## Files to change

- `bot/calc.py:12` — raise a clear error when `b` is zero
- tests/test_calc.py — a test that fails before the fix
- `docs/calc.md` — document the error

## Steps

1. Edit `bot/calc.py`, run `pytest tests/test_calc.py`.
"""


def added_file(path: str, *lines: str) -> str:
    body = "".join(f"+{line}\n" for line in lines)
    header = f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
    return f"{header}--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


TEST_CALC = added_file(
    "tests/test_calc.py",
    "import pytest",
    "from bot.calc import divide",
    "",
    "def test_divide_by_zero():",
    "    with pytest.raises(ZeroDivisionError):",
    "        divide(1, 0)",
)
DIFF = CALC + TEST_CALC + LOCK + LOGO

RATIONALES = {
    Dimension.ROOT_CAUSE: "The plan names the unchecked divisor in `divide` as the cause.",
    Dimension.RESOLUTION: "A zero divisor now raises a clear error, as the issue asks.",
    Dimension.SCOPE: "The change stays in `divide` and its test.",
    Dimension.QUALITY: "The guard is short and matches the surrounding style.",
    Dimension.TESTING: "A new test covers the zero case and validation passed after the change.",
    Dimension.CORRECTNESS: "Negative zero and non-numeric inputs are not considered.",
    Dimension.FIDELITY: "The diff follows the plan but leaves out the documentation step.",
}
EVIDENCE = {
    Dimension.ROOT_CAUSE: ["plan"],
    Dimension.RESOLUTION: ["bot/calc.py:12-13"],
    Dimension.SCOPE: ["bot/calc.py:12-14", "poetry.lock:2"],
    Dimension.QUALITY: ["bot/calc.py:12"],
    Dimension.TESTING: ["tests/test_calc.py:4-6", "validation"],
    Dimension.CORRECTNESS: ["bot/calc.py:12"],
    Dimension.FIDELITY: ["plan", "bot/calc.py:12-14"],
}


SECOND_OPINION = {
    Dimension.ROOT_CAUSE: "Correct cause, though the plan does not show how it was confirmed.",
    Dimension.RESOLUTION: "Raises on zero as requested; the message could name the argument.",
    Dimension.SCOPE: "Only the guard, its test and an unrelated lock file bump.",
    Dimension.QUALITY: "Idiomatic and consistent with `add` below it.",
    Dimension.TESTING: "The test fails before the fix and passes after; the suite ran green.",
    Dimension.CORRECTNESS: "Float zero is handled, but `-0.0` and `Decimal(0)` are not tested.",
    Dimension.FIDELITY: "Matches the plan except for the skipped documentation.",
}


def score_entry(dimension: Dimension, score: int, rationales: dict[Dimension, str]) -> dict[str, object]:
    return {
        "dimension": dimension.value,
        "score": score,
        "rationale": rationales[dimension],
        "evidence": EVIDENCE[dimension],
    }


def arguments(
    scores: dict[Dimension, int],
    summary: str = "A focused fix with a test.",
    rationales: dict[Dimension, str] = RATIONALES,
    **extra,
) -> dict:
    entries = [score_entry(d, s, rationales) for d, s in scores.items()]
    return {"scores": entries, "summary": summary, **extra}


def all_scores(has_plan: bool = True, **overrides: int) -> dict[Dimension, int]:
    base = {d: 7 for d in dimensions(has_plan)}
    return base | {Dimension(name): score for name, score in overrides.items()}


def rejected(data: dict | str, has_plan: bool = True) -> str:
    with pytest.raises(SubmissionError) as caught:
        validate_submission(data, has_plan)
    return str(caught.value)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} changed: if intended, regenerate with UPDATE_GOLDEN=1"


# --- rubric ------------------------------------------------------------------------------------------------


def test_rubric_has_seven_anchored_dimensions_and_six_without_a_plan() -> None:
    assert RUBRIC_VERSION == "2026-11-27.1"
    assert [d.value for d in dimensions(True)] == [
        "root_cause",
        "resolution",
        "scope",
        "quality",
        "testing",
        "correctness",
        "fidelity",
    ]
    assert Dimension.FIDELITY not in dimensions(False) and len(dimensions(False)) == 6
    assert (rubric.out_of(True), rubric.out_of(False)) == (70, 60)
    for criterion in CRITERIA.values():
        assert set(criterion.anchors) == {0, 5, 10} and all(len(a) > 40 for a in criterion.anchors.values())


def test_rubric_text_lists_the_scored_dimensions() -> None:
    with_plan, without = rubric_text(True), rubric_text(False)
    assert "`fidelity` — Plan–implementation fidelity" in with_plan and "- **10:**" in with_plan
    assert "## `fidelity`" not in without and "out of 60" in without
    assert all(f"`{d}`" in without for d in dimensions(False))


# --- the tool schema and submissions ---------------------------------------------------------------------


def test_tool_schema_lists_the_dimensions_and_required_fields() -> None:
    spec = ToolSpec.from_args("submit_evaluation", SubmitEvaluation)
    schema = spec.parameters
    assert spec.description.startswith("Submit your evaluation of the change")
    assert schema["required"] == ["scores", "summary"]
    assert schema["$defs"]["Dimension"]["enum"] == [d.value for d in Dimension]
    score = schema["$defs"]["DimensionScore"]
    assert score["required"] == ["dimension", "score", "rationale", "evidence"]
    assert (score["properties"]["score"]["minimum"], score["properties"]["score"]["maximum"]) == (0, 10)
    assert score["properties"]["evidence"]["minItems"] == 1
    assert schema["$defs"]["InlineComment"]["required"] == ["path", "line", "body"]


def test_a_valid_submission_passes_from_json_text_and_from_a_dict() -> None:
    data = arguments(all_scores(), comments=[{"path": "bot/calc.py", "line": 12, "body": "Good guard."}])
    from_text = validate_submission(json.dumps(data), has_plan=True)
    assert from_text == validate_submission(data, has_plan=True)
    assert {s.dimension for s in from_text.scores} == set(Dimension)
    assert from_text.comments[0].line == 12
    without_plan = validate_submission(arguments(all_scores(has_plan=False)), has_plan=False)
    assert len(without_plan.scores) == 6


def test_missing_dimension_is_named() -> None:
    scores = all_scores()
    del scores[Dimension.TESTING]
    message = rejected(arguments(scores))
    assert "missing scores for testing" in message


def test_duplicate_dimension_is_named() -> None:
    data = arguments(all_scores())
    data["scores"].append(score_entry(Dimension.SCOPE, 3, RATIONALES))
    assert "more than one score for scope" in rejected(data)


def test_fidelity_without_a_plan_is_unexpected() -> None:
    message = rejected(arguments(all_scores(has_plan=True)), has_plan=False)
    assert "unexpected score for fidelity" in message and "no plan" in message


def test_score_out_of_range_names_the_field_and_dimension() -> None:
    message = rejected(arguments(all_scores(testing=11)))
    assert "scores[4] (testing).score" in message and "less than or equal to 10" in message


def test_empty_rationale_is_rejected() -> None:
    data = arguments(all_scores())
    data["scores"][0]["rationale"] = "   "
    assert "scores[0] (root_cause).rationale" in rejected(data)


def test_malformed_json_is_rejected() -> None:
    assert "not valid JSON" in rejected('{"scores": [')
    assert "must be a JSON object" in rejected("[1, 2]")


@pytest.mark.parametrize("evidence", ["bot/calc.py", "/abs/x.py:3", "x.py:0", "x.py:9-3", "the diff"])
def test_bad_evidence_is_rejected(evidence: str) -> None:
    data = arguments(all_scores())
    data["scores"][2]["evidence"] = [evidence]
    assert "scores[2] (scope).evidence[0]: evidence must be `path:LINE`" in rejected(data)


def test_no_evidence_and_non_integer_scores_are_rejected() -> None:
    data = arguments(all_scores())
    data["scores"][1]["evidence"] = []
    data["scores"][3]["score"] = 7.5
    message = rejected(data)
    assert "scores[1] (resolution).evidence" in message and "scores[3] (quality).score" in message


# --- combining a panel ----------------------------------------------------------------------------------


def submit(scores: dict[Dimension, int], **extra) -> SubmitEvaluation:
    return validate_submission(arguments(scores, **extra), has_plan=Dimension.FIDELITY in scores)


def test_combine_takes_the_mean_and_spread_of_a_panel() -> None:
    first = submit(all_scores(scope=6, testing=9))
    second = submit(all_scores(scope=9, testing=8))
    evaluation = combine([first, second], True, ["opus", "kimi"], Signals())
    means = evaluation.means()
    assert (means[Dimension.SCOPE], means[Dimension.TESTING], means[Dimension.QUALITY]) == (7.5, 8.5, 7.0)
    spreads = {r.dimension: r.spread for r in evaluation.dimensions}
    assert (spreads[Dimension.SCOPE], spreads[Dimension.QUALITY]) == (3, 0)
    assert evaluation.total == 51.0 and evaluation.out_of == 70
    assert evaluation.judges == ["judge-1", "judge-2"] and evaluation.judge_models == ["opus", "kimi"]
    assert Evaluation.model_validate_json(evaluation.model_dump_json()) == evaluation


def test_combine_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="one judge model per submission"):
        combine([submit(all_scores())], True, ["a", "b"], Signals())
    with pytest.raises(SubmissionError, match="unexpected score for fidelity"):
        combine([submit(all_scores())], False, ["a"], Signals())


def test_failed_evaluation_has_no_scores() -> None:
    evaluation = failed("the judge gave no valid call", True, Signals(), ["opus"])
    assert evaluation.status == "failed" and evaluation.total is None and not evaluation.dimensions
    assert evaluation.out_of == 70 and evaluation.error == "the judge gave no valid call"


# --- signals --------------------------------------------------------------------------------------------


def test_files_named_prefers_the_files_to_change_section() -> None:
    assert files_named(PLAN) == ["bot/calc.py", "tests/test_calc.py", "docs/calc.md"]


def test_files_named_falls_back_to_the_whole_plan_and_skips_non_paths() -> None:
    plan = (
        "Fix `bot/x.py:12` and src/y/z.ts (see https://example.com/a/b.py). Not paths: e.g. Node.js, "
        "`foo()`, bot.providers.types, 1.2.3, `pytest tests/test_a.py`.\n\n```python\nopen('c/d.py')\n```\n"
    )
    assert files_named(plan) == ["bot/x.py", "src/y/z.ts"]


def test_signals_compare_the_diff_with_the_plan() -> None:
    signals = measure(DIFF, PLAN, validation_before=False, validation_after=True)
    assert signals.files_touched == ["bot/calc.py", "tests/test_calc.py", "poetry.lock", "assets/logo.png"]
    assert signals.planned == ["bot/calc.py", "tests/test_calc.py"]
    assert signals.unplanned == ["poetry.lock", "assets/logo.png"]
    assert signals.missed == ["docs/calc.md"]
    assert (signals.lines_added, signals.lines_removed) == (3 + 6 + 1, 3 + 1)
    assert signals.tests_changed == ["tests/test_calc.py"]
    assert signals.generated == {"poetry.lock": "lock file"}
    assert signals.binary_files == ["assets/logo.png"]
    assert (signals.validation_before, signals.validation_after) == (False, True)


def test_without_a_plan_nothing_is_compared() -> None:
    signals = measure(CALC, None, None, None)
    assert signals.files_named is None and signals.unplanned is None
    assert signals.planned == [] and signals.missed == [] and not signals.has_plan


def test_named_directories_and_file_names_match_touched_files() -> None:
    plan = "## Files to change\n\n- `bot/evaluation/`\n- test_calc.py\n- `bot/missing/`\n"
    diff = added_file("bot/evaluation/rubric.py", "x = 1") + TEST_CALC
    signals = measure(diff, plan, None, None)
    assert signals.planned == ["bot/evaluation/rubric.py", "tests/test_calc.py"]
    assert signals.missed == ["bot/missing/"] and signals.unplanned == []


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_x.py", True),
        ("pkg/test_x.py", True),
        ("pkg/x_test.go", True),
        ("web/src/app.test.ts", True),
        ("spec/models/user_spec.rb", True),
        ("web/__tests__/app.js", True),
        ("src/main/FooTest.java", True),
        ("bot/contest.py", False),
        ("bot/testing_utils.py", False),
        ("docs/tests.md", False),
    ],
)
def test_test_conventions(path: str, is_test: bool) -> None:
    assert is_test_path(path) is is_test


def test_generated_vendored_and_build_files_are_flagged() -> None:
    diff = (
        added_file("vendor/lib/a.go", "package lib")
        + added_file("dist/app.js", "x()")
        + added_file("web/app.min.js", "x()")
        + added_file("proto/api_pb2.py", "x = 1")
        + added_file("api/client.go", "// Code generated by protoc-gen-go. DO NOT EDIT.", "package api")
        + added_file("go.sum", "x v1 h1:y")
        + added_file("src/build/helper.py", "x = 1")
    )
    assert measure(diff, None, None, None).generated == {
        "vendor/lib/a.go": "vendored",
        "dist/app.js": "build output",
        "web/app.min.js": "generated",
        "proto/api_pb2.py": "generated",
        "api/client.go": "generated",
        "go.sum": "lock file",
    }


def test_disagreement_flags_fire_when_measurements_contradict_high_scores() -> None:
    diff = CALC + LOCK + added_file("scripts/debug.py", "x = 1") + added_file("notes.txt", "x")
    signals = measure(diff, PLAN, validation_before=False, validation_after=False)
    means = {d: 9.0 for d in Dimension}
    flags = disagreements(means, signals)
    assert len(flags) == 6
    assert flags[0].startswith("Scope discipline scored 9/10, yet 3 changed files are not named in the plan")
    assert "`poetry.lock`" in flags[1]
    assert flags[2] == "Testing and validation scored 9/10, yet no test files were added or changed."
    assert flags[3] == "Testing and validation scored 9/10, yet validation failed after the change."
    assert flags[4] == "Issue resolution scored 9/10, yet validation failed after the change."
    assert "`tests/test_calc.py`, `docs/calc.md`" in flags[5]


def test_disagreement_flags_stay_quiet_for_modest_scores_or_agreeing_signals() -> None:
    contradicting = measure(CALC + LOCK, PLAN, False, False)
    assert disagreements({d: 7.5 for d in Dimension}, contradicting) == []
    agreeing = measure(
        CALC + TEST_CALC, "## Files to change\n- `bot/calc.py`\n- `tests/test_calc.py`\n", False, True
    )
    assert disagreements({d: 10.0 for d in Dimension}, agreeing) == []
    no_plan = measure(
        CALC + TEST_CALC + added_file("a/b.py", "x") + added_file("c/d.py", "x"), None, None, True
    )
    scores = {d: 10.0 for d in dimensions(False)}
    assert disagreements(scores, no_plan) == []


# --- anchoring ------------------------------------------------------------------------------------------


def test_anchoring_keeps_lines_github_shows_on_the_right() -> None:
    comments = [
        InlineComment(path="bot/calc.py", line=12, body="added line"),
        InlineComment(path="bot/calc.py", line=10, body="context line"),
        InlineComment(path="bot/calc.py", line=41, body="a deleted line (old 41)"),
        InlineComment(path="bot/calc.py", line=30, body="outside any hunk"),
        InlineComment(path="bot/other.py", line=1, body="not in the diff"),
        InlineComment(path="tests/test_calc.py", line=6, body="new file"),
    ]
    anchored, leftover = anchor(comments, DIFF)
    assert anchored == [
        {"path": "bot/calc.py", "line": 12, "side": "RIGHT", "body": "added line"},
        {"path": "bot/calc.py", "line": 10, "side": "RIGHT", "body": "context line"},
        {"path": "tests/test_calc.py", "line": 6, "side": "RIGHT", "body": "new file"},
    ]
    assert [c.body for c in leftover] == ["a deleted line (old 41)", "outside any hunk", "not in the diff"]


def test_anchoring_uses_the_same_rule_as_the_fake_github() -> None:
    fake = {path: lines for (path, side), lines in commentable_lines(DIFF).items() if side == "RIGHT"}
    assert right_side_lines(DIFF) == fake


# --- the review -----------------------------------------------------------------------------------------

COMMENTS = [
    {"path": "bot/calc.py", "line": 12, "body": "Consider `math.isclose` for float zero."},
    {"path": "bot/calc.py", "line": 41, "body": "Was removing `warn()` intended?"},
]


def one_judge() -> Evaluation:
    signals = measure(DIFF, PLAN, validation_before=False, validation_after=True)
    submission = submit(
        all_scores(root_cause=9, resolution=9, scope=8, quality=8, testing=8, correctness=6, fidelity=7),
        summary="A small, correct guard with a focused test; the lock file change is unexplained.",
        comments=COMMENTS,
    )
    return combine([submission], True, ["opus"], signals)


def test_golden_one_judge_with_a_plan() -> None:
    evaluation = one_judge()
    anchored, leftover = anchor(evaluation.comments, DIFF)
    assert len(anchored) == 1 and evaluation.total == 55.0
    assert_golden("review_one_judge.md", render_review(evaluation, leftover))


def test_golden_panel_with_spread() -> None:
    signals = measure(DIFF, PLAN, validation_before=False, validation_after=True)
    first = submit(all_scores(root_cause=9, scope=3, testing=8), summary="Right fix; the lock file is noise.")
    second = submit(
        all_scores(root_cause=8, scope=9, testing=9),
        summary="Tight and well tested.",
        rationales=SECOND_OPINION,
    )
    evaluation = combine([first, second], True, ["opus", "gpt"], signals)
    assert evaluation.flags[0] == "The judges disagree on Scope discipline: 3, 9 (spread 6)."
    assert_golden("review_panel.md", render_review(evaluation, []))


def test_golden_human_pull_request_without_a_plan() -> None:
    signals = measure(CALC + TEST_CALC, None, validation_before=None, validation_after=True)
    rationales = RATIONALES | {
        Dimension.ROOT_CAUSE: "The description names the unchecked divisor as the cause."
    }
    scores = all_scores(has_plan=False, resolution=8)
    submission = submit(scores, summary="A reasonable fix by hand.", rationales=rationales)
    evaluation = combine([submission], False, ["opus"], signals)
    assert evaluation.out_of == 60 and evaluation.total == 43.0
    text = render_review(evaluation, [])
    assert "n/a (no plan)" in text and "out of 60" in text
    assert_golden("review_no_plan.md", text)


def test_golden_failed_evaluation() -> None:
    signals = measure(DIFF, PLAN, validation_before=False, validation_after=True)
    evaluation = failed(
        "judge-1: the evaluation model gave no valid `submit_evaluation`.", True, signals, ["opus"]
    )
    text = render_review(evaluation, [])
    assert "The evaluation failed: judge-1: the evaluation model gave no valid `submit_evaluation`." in text
    assert "No scores were given." in text and "/ 70" not in text and "| Dimension |" not in text
    assert_golden("review_failed.md", text)


def test_review_stays_under_githubs_limit() -> None:
    evaluation = one_judge().model_copy(update={"summaries": ["word " * 30_000]})
    leftover = [InlineComment(path=f"src/f{i}.py", line=i + 1, body="long " * 400) for i in range(300)]
    text = render_review(evaluation, leftover)
    assert len(text) <= BODY_LIMIT < 65_536
    assert "truncated:" in text and "more, not shown" in text
    assert text.rstrip().endswith("</sub>")


def test_evidence_must_name_a_file_of_the_change_or_the_repository() -> None:
    data = arguments(all_scores())
    known = {"bot/calc.py", "tests/test_calc.py", "poetry.lock"}
    assert validate_submission(data, has_plan=True, known_files=known)  # every cited file exists
    with pytest.raises(SubmissionError) as caught:
        validate_submission(data, has_plan=True, known_files=known - {"poetry.lock"})
    assert "`poetry.lock:2` names `poetry.lock`, which is neither in the change nor in the repository" in str(
        caught.value
    )
    assert validate_submission(data, has_plan=True, known_files=None)  # unknown repository: no check
