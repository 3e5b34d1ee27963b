"""Commit-ready suggestions: a judge's inline comment may carry a replacement for its lines, offered as a
GitHub ```suggestion block only where every line is on the right side of one diff hunk and the
replacement is valid; otherwise the comment keeps its text and says why the block is missing. End to end
through `/archon evaluate`, the RQ worker and the fake GitHub (OpenAPI-validated)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.evaluation.judge import evaluate, prompt, tool_spec
from bot.evaluation.review import (
    HAS_FENCE,
    HAS_SECRET,
    NOT_IN_DIFF,
    OVERLAPS,
    TOO_LONG,
    UNCHANGED,
    UNPLACED_SUGGESTION,
    anchor,
    render_review,
)
from bot.evaluation.rubric import Dimension, dimensions
from bot.evaluation.schema import (
    SUGGESTION_MAX_LINES,
    InlineComment,
    SubmissionError,
    combine,
    validate_submission,
)
from bot.evaluation.signals import measure
from bot.secrets import Redactor
from tests.support import REPO
from tests.test_evaluation_judge import case, judge, scores, submit
from tests.test_workflow_run import evaluate_human_fix

DIFF = """\
diff --git a/app.py b/app.py
--- a/app.py
+++ b/app.py
@@ -1,4 +1,4 @@
 import os
-x = 1
+x = 10
 y = 2
 z = 3
@@ -20,5 +20,4 @@ def f():
 def g():
-    old = 1
-    return old
+    return 2
 # g ends
 def h():
diff --git a/old.py b/old.py
deleted file mode 100644
--- a/old.py
+++ /dev/null
@@ -1,2 +0,0 @@
-gone = 1
-also_gone = 2
"""
NO_SECRETS = Redactor(use_registry=False)


def comment(line: int, suggestion: str | None, start_line: int | None = None, path: str = "app.py"):
    return InlineComment(path=path, line=line, start_line=start_line, body="Try this.", suggestion=suggestion)


def placed(*comments: InlineComment, redactor: Redactor = NO_SECRETS) -> list[dict]:
    anchored, leftover = anchor(comments, DIFF, redactor)
    assert not leftover
    return anchored


def block(text: str) -> str:
    return f"\n\n```suggestion\n{text}\n```"


def left_out(reason: str) -> str:
    return f"\n\n<sub>A suggested change for these lines was left out: {reason}.</sub>"


# --- on the diff --------------------------------------------------------------------------------------


def test_a_suggestion_on_an_added_line_becomes_a_suggestion_block() -> None:
    assert placed(comment(2, "x = 11\n")) == [
        {"path": "app.py", "line": 2, "side": "RIGHT", "body": "Try this." + block("x = 11")}
    ]


def test_a_multi_line_suggestion_spans_start_line_to_line_on_the_right() -> None:
    [review] = placed(comment(3, "import sys\nx = 10\ny = 2", start_line=1))
    assert review == {
        "path": "app.py",
        "line": 3,
        "side": "RIGHT",
        "start_line": 1,
        "start_side": "RIGHT",
        "body": "Try this." + block("import sys\nx = 10\ny = 2"),
    }


def test_a_range_over_deleted_lines_of_one_hunk_is_fine() -> None:
    """Lines 20–21 of the new file are one hunk; the old lines deleted between them have no new number."""
    [review] = placed(comment(21, "def g():\n    return 3", start_line=20))
    assert review["start_line"] == 20 and review["body"].endswith(block("def g():\n    return 3"))


def test_a_comment_without_a_suggestion_is_unchanged() -> None:
    assert placed(comment(2, None), comment(4, "  ")) == [
        {"path": "app.py", "line": 2, "side": "RIGHT", "body": "Try this."},
        {"path": "app.py", "line": 4, "side": "RIGHT", "body": "Try this."},
    ]


# --- left out, the comment kept -----------------------------------------------------------------------


def test_outside_the_diff_the_comment_goes_to_the_body_without_a_block() -> None:
    anchored, leftover = anchor([comment(10, "x = 5")], DIFF, NO_SECRETS)
    assert anchored == [] and [c.line for c in leftover] == [10]
    body = render_review(_evaluation([comment(10, "x = 5")]), leftover)
    assert "`app.py:10` — Try this." + UNPLACED_SUGGESTION in body and "```suggestion" not in body


def test_on_a_deleted_line_the_comment_goes_to_the_body_without_a_block() -> None:
    deleted = comment(1, "gone = 2", path="old.py")
    anchored, leftover = anchor([deleted], DIFF, NO_SECRETS)
    assert anchored == [] and leftover == [deleted]
    assert "```suggestion" not in render_review(_evaluation([deleted]), leftover)


def test_a_range_straddling_two_hunks_is_posted_on_its_last_line_without_a_block() -> None:
    [review] = placed(comment(20, "x = 10\ndef g():", start_line=2))
    assert review == {
        "path": "app.py",
        "line": 20,
        "side": "RIGHT",
        "body": "Try this." + left_out(NOT_IN_DIFF),
    }


def test_a_range_starting_outside_the_diff_gets_no_block() -> None:
    [review] = placed(comment(20, "def g():", start_line=18))
    assert "start_line" not in review and review["body"].endswith(left_out(NOT_IN_DIFF))


@pytest.mark.parametrize(
    ("suggestion", "reason"),
    [
        ("```python\nx = 11\n```", HAS_FENCE),
        ("x = 11  # ``` inside", HAS_FENCE),
        ("x = 10", UNCHANGED),
        ("x = 10   \n", UNCHANGED),
        ("\n".join(["x = 11"] * (SUGGESTION_MAX_LINES + 1)), TOO_LONG),
        ("x = '" + "a" * 7000 + "'", TOO_LONG),
    ],
)
def test_an_invalid_replacement_is_left_out_and_the_comment_says_why(suggestion: str, reason: str) -> None:
    [review] = placed(comment(2, suggestion))
    assert review["body"] == "Try this." + left_out(reason) and "```suggestion" not in review["body"]


def test_a_replacement_with_a_secret_is_left_out() -> None:
    redactor = Redactor(["sk-live-0123456789abcdef"], use_registry=False)
    [review] = placed(comment(2, 'x = "sk-live-0123456789abcdef"'), redactor=redactor)
    assert review["body"] == "Try this." + left_out(HAS_SECRET)


@given(st.text(alphabet=st.sampled_from("x =1`~\n\t#"), max_size=60))
def test_a_posted_block_is_always_one_well_formed_fence(text: str) -> None:
    [review] = placed(comment(2, text))
    body = review["body"]
    if "```suggestion" in body:
        inner = body.split("```suggestion\n", 1)[1]
        assert inner.endswith("\n```") and "```" not in inner[: -len("\n```")]
    else:
        assert body == "Try this." or "left out" in body


# --- panels -------------------------------------------------------------------------------------------


def _submission(comments: list[InlineComment]):
    return validate_submission(
        {
            "scores": [
                {"dimension": d.value, "score": 7, "rationale": "Fine.", "evidence": ["app.py:2"]}
                for d in dimensions(False)
            ],
            "summary": "Fine.",
            "comments": [c.model_dump(exclude_none=True) for c in comments],
        },
        has_plan=False,
    )


def _evaluation(*panel: list[InlineComment]):
    submissions = [_submission(comments) for comments in panel]
    return combine(submissions, False, [f"m{n}" for n in range(len(panel))], measure(DIFF, None, None, None))


def test_a_panel_offers_one_suggestion_per_line_range() -> None:
    evaluation = _evaluation(
        [comment(3, "x = 11\ny = 3", start_line=2), comment(21, "    return 4")],
        [comment(2, "x = 12"), comment(4, "z = 4"), comment(21, "    return 5")],
    )
    anchored, _ = anchor(evaluation.comments, DIFF, NO_SECRETS)
    bodies = [(c["line"], c["body"]) for c in anchored]
    assert bodies == [
        (3, "**judge-1:** Try this." + block("x = 11\ny = 3")),
        (21, "**judge-1:** Try this." + block("    return 4")),
        (2, "**judge-2:** Try this." + left_out(OVERLAPS)),
        (4, "**judge-2:** Try this." + block("z = 4")),
        (21, "**judge-2:** Try this." + left_out(OVERLAPS)),
    ]


def test_a_suggestion_that_is_left_out_does_not_block_another_judges() -> None:
    evaluation = _evaluation([comment(2, "x = 10")], [comment(2, "x = 12")])
    anchored, _ = anchor(evaluation.comments, DIFF, NO_SECRETS)
    assert [c["body"] for c in anchored] == [
        "**judge-1:** Try this." + left_out(UNCHANGED),
        "**judge-2:** Try this." + block("x = 12"),
    ]


# --- the judge is told, and checked -------------------------------------------------------------------


def test_the_tool_schema_and_the_prompt_offer_suggestions() -> None:
    spec = tool_spec()
    item = spec.parameters["$defs"]["InlineComment"]
    assert {"suggestion", "start_line"} <= set(item["properties"])
    assert set(item["required"]) == {"path", "line", "body"}
    assert "suggestion" in spec.description and "suggestion" in prompt(case())


def test_a_range_that_ends_before_it_starts_is_refused_with_a_reason() -> None:
    with pytest.raises(SubmissionError, match=r"start_line \(5\) must not be after line \(3\)"):
        _submission([InlineComment.model_construct(path="app.py", line=3, start_line=5, body="b")])


def test_an_evaluation_stored_before_suggestions_still_loads() -> None:
    old = {"path": "app.py", "line": 2, "body": "Why?"}
    loaded = InlineComment.model_validate(old)
    assert loaded.suggestion is None and loaded.start_line is None


# --- end to end: the review's inline comment on GitHub carries the block -------------------------------


def judge_with_suggestions(scripts: Path) -> None:
    """The bundled judge, scoring without a plan, with suggestions on and off the diff of the human fix."""
    source = Path(str(resources.files("bot.providers.scripts") / "demo-opus-evaluate.jsonl"))
    turn = json.loads(source.read_text().splitlines()[1])
    arguments = turn["tool_calls"][0]["arguments"]
    arguments["scores"] = [s for s in arguments["scores"] if s["dimension"] != Dimension.FIDELITY]
    arguments["comments"] = [
        {"path": "textkit/slug.py", "line": 6, "body": "Simpler with a regex.", "suggestion": FIXED},
        {"path": "textkit/slug.py", "start_line": 4, "line": 5, "body": "Say it.", "suggestion": DOCSTRING},
        {"path": "textkit/slug.py", "line": 1, "body": "Module docstring?", "suggestion": '"""Slugs."""'},
    ]
    scripts.mkdir(exist_ok=True)
    (scripts / "demo-opus-evaluate.jsonl").write_text(json.dumps(turn) + "\n")


FIXED = '    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))'
DOCSTRING = 'def slugify(title: str) -> str:\n    """Letters and digits only, joined by single hyphens."""'


def test_the_review_on_github_carries_the_suggestion_block(
    github, redis_conn, remote, tmp_path, monkeypatch
) -> None:
    number = evaluate_human_fix(github, redis_conn, remote, tmp_path, monkeypatch, judge_with_suggestions)
    [review] = github.reviews(REPO, number)
    assert review["comments"] == [
        {
            "path": "textkit/slug.py",
            "line": 6,
            "side": "RIGHT",
            "body": "Simpler with a regex." + block(FIXED),
        },
        {
            "path": "textkit/slug.py",
            "line": 5,
            "side": "RIGHT",
            "start_line": 4,
            "start_side": "RIGHT",
            "body": "Say it." + block(DOCSTRING),
        },
    ]
    assert "`textkit/slug.py:1` — Module docstring?" + UNPLACED_SUGGESTION in review["body"]


def test_a_scripted_judges_suggestion_reaches_the_evaluation_and_the_review() -> None:
    arguments = scores(True)
    arguments["comments"] = [{"path": "app.py", "line": 2, "body": "Name it.", "suggestion": "b = B = 20"}]
    evaluation, _ = evaluate([("opus", judge(submit(arguments)))], case())
    [stored] = evaluation.comments
    assert stored.suggestion == "b = B = 20"
    [review], _ = anchor(evaluation.comments, case().diff, NO_SECRETS)
    assert review["body"] == "Name it." + block("b = B = 20")


def test_a_range_outside_the_diff_is_listed_with_its_lines() -> None:
    outside = comment(12, "a\nb", start_line=10)
    body = render_review(_evaluation([outside]), [outside])
    assert "`app.py:10-12` — Try this." + UNPLACED_SUGGESTION in body
