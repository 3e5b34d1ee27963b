"""The judge with scripted evaluation models (real provider classes): blind prompts, the one repair
attempt, the failure path that never invents a score, panels."""

from __future__ import annotations

import json

import pytest

from bot.evaluation.judge import Case, evaluate, prompt, run_judge
from bot.evaluation.rubric import Dimension, dimensions
from bot.evaluation.signals import measure
from bot.providers.registry import DEFAULT_MODELS, ModelSpec, Provider
from bot.providers.scripted import ScriptedProvider, ScriptedToolCall, ScriptedTurn
from bot.providers.types import ModelSlot, Usage

DIFF = """diff --git a/app.py b/app.py
--- a/app.py
+++ b/app.py
@@ -1,3 +1,3 @@
 a = 1
-b = 2
+b = 20
 c = 3
"""
PLAN = "## Files to change\n- `app.py` — set b to 20.\n"
SPEC = ModelSpec(provider=Provider.SCRIPTED, model="judge", prices=DEFAULT_MODELS["opus"].prices)


def scores(has_plan: bool, value: int = 8, skip: Dimension | None = None) -> dict:
    return {
        "scores": [
            {
                "dimension": d.value,
                "score": value,
                "rationale": f"{d.value} is fine.",
                "evidence": ["app.py:2"],
            }
            for d in dimensions(has_plan)
            if d is not skip
        ],
        "summary": "Small and right.",
        "comments": [{"path": "app.py", "line": 2, "body": "Why 20?"}],
    }


def judge(*turns: ScriptedTurn) -> ModelSlot:
    return ModelSlot(ScriptedProvider(list(turns), label="judge"), SPEC)


def submit(arguments: dict | str) -> ScriptedTurn:
    return ScriptedTurn(
        tool_calls=[ScriptedToolCall(name="submit_evaluation", arguments=arguments)],
        usage=Usage(input_tokens=3000, output_tokens=500),
    )


def case(plan: str | None = PLAN) -> Case:
    return Case(
        issue_title="b is wrong",
        issue_body="b should be 20",
        diff=DIFF,
        plan=plan,
        validation="2 passed",
        signals=measure(DIFF, plan, False, True),
    )


def test_a_valid_submission_on_the_first_try() -> None:
    run = run_judge("judge-1", judge(submit(scores(True))), case())
    assert run.submission is not None and run.calls == 1 and run.error is None


def test_one_repair_attempt_with_the_validation_error() -> None:
    slot = judge(submit(scores(True, skip=Dimension.TESTING)), submit(scores(True)))
    run = run_judge("judge-1", slot, case())
    assert run.submission is not None and run.calls == 2
    [_, second] = slot.provider.requests
    error = second.messages[-1].content[0]
    assert error.is_error and "testing" in error.content


def test_no_tool_call_is_repaired_too() -> None:
    slot = judge(ScriptedTurn(text="I think it is fine."), submit(scores(True)))
    assert run_judge("judge-1", slot, case()).submission is not None


def test_two_invalid_answers_fail_without_inventing_scores() -> None:
    slot = judge(submit("{not json"), submit(scores(True, value=11)))
    evaluation, runs = evaluate([("opus", slot)], case())
    assert evaluation.status == "failed" and evaluation.total is None and evaluation.dimensions == []
    assert "after one repair attempt" in evaluation.error and runs[0].calls == 2


def test_a_provider_outage_is_a_failed_evaluation() -> None:
    evaluation, _ = evaluate([("opus", judge(ScriptedTurn(error="overloaded")))], case())
    assert evaluation.status == "failed" and "overloaded" in evaluation.error


def test_the_prompt_is_blind_to_models() -> None:
    text = prompt(case())
    for name in ("opus", "kimi", "sonnet", "haiku", "claude", "gpt", "moonshot", "anthropic"):
        assert name not in text.lower()
    assert "b should be 20" in text and "+b = 20" in text and "Files to change" in text


def test_without_a_plan_fidelity_is_not_asked_and_the_total_is_out_of_60() -> None:
    no_plan = case(plan=None)
    assert "fidelity" not in json.dumps(scores(False))
    evaluation, _ = evaluate([("opus", judge(submit(scores(False))))], no_plan)
    assert evaluation.out_of == 60 and evaluation.total == 48
    rejected, _ = evaluate([("opus", judge(submit(scores(True)), submit(scores(True))))], no_plan)
    assert rejected.status == "failed" and "fidelity" in rejected.error


def test_a_panel_reports_mean_and_spread_and_survives_one_failed_judge() -> None:
    panel = [
        ("opus", judge(submit(scores(True, 6)))),
        ("kimi", judge(submit(scores(True, 9)))),
        ("gpt", judge(ScriptedTurn(error="server"))),
    ]
    evaluation, runs = evaluate(panel, case())
    assert evaluation.status == "ok" and evaluation.judge_models == ["opus", "kimi"]
    assert all(d.mean == pytest.approx(7.5) and d.spread == 3 for d in evaluation.dimensions)
    assert evaluation.total == pytest.approx(52.5)
    assert any("failed and is not counted" in flag for flag in evaluation.flags)
    # two judges × (3000 × $4 + 500 × $20) per million
    assert sum(r.cost_usd for r in runs) == pytest.approx(2 * 0.022)
