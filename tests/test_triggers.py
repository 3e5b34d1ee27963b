"""The trigger grammar: every form people type, and every way to get it wrong."""

from __future__ import annotations

import pytest

from bot.commands import COMMANDS, CommandName, help_text
from bot.triggers import (
    BenchRequest,
    EvaluateRequest,
    PlainRequest,
    ReviseRequest,
    Role,
    RunRequest,
    TriggerError,
    is_archon_label,
    is_command,
    parse_comment,
    parse_label,
    request_from_labels,
)

# --- labels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "models", "workflow"),
    [
        ("archon:plan-opus impl-kimi", {Role.PLAN: "opus", Role.IMPL: "kimi"}, None),
        ("archon:plan-opus,impl-kimi", {Role.PLAN: "opus", Role.IMPL: "kimi"}, None),
        ("archon:plan-opus, impl-kimi", {Role.PLAN: "opus", Role.IMPL: "kimi"}, None),
        ("Archon:PLAN-Opus", {Role.PLAN: "opus"}, None),
        ("archon:impl-kimi", {Role.IMPL: "kimi"}, None),
        ("archon:explore-haiku eval-sonnet", {Role.EXPLORE: "haiku", Role.EVAL: "sonnet"}, None),
        ("archon:plan-gpt-5.1", {Role.PLAN: "gpt-5.1"}, None),
        ("archon:plan=opus impl=kimi", {Role.PLAN: "opus", Role.IMPL: "kimi"}, None),
        ("archon:workflow-fix-issue plan-opus", {Role.PLAN: "opus"}, "fix-issue"),
    ],
)
def test_label_tokens(label: str, models: dict, workflow: str | None) -> None:
    assert parse_label(label) == RunRequest(models=models, workflow=workflow)


def test_bench_label() -> None:
    assert parse_label("archon:bench") == BenchRequest()
    assert parse_label("ARCHON:bench ") == BenchRequest()


@pytest.mark.parametrize("label", ["bug", "archon", "archonx:plan-opus", "", "help wanted"])
def test_labels_that_are_not_ours(label: str) -> None:
    assert parse_label(label) is None
    assert not is_archon_label(label)


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        ("archon:", "nothing after"),
        ("archon:plan", "is not an option"),
        ("archon:plan-", "needs a value"),
        ("archon:speed-fast", "`speed` is not an option"),
        ("archon:plan-opus plan-kimi", "given twice"),
        ("archon:plan-opus,kimi", "`kimi` is not an option"),
        ("archon:plan-Op$us", "not a model alias"),
        ("archon:workflow-Fix!", "not a workflow name"),
        ("archon:bench plan-opus", "`bench` is not an option"),
    ],
)
def test_bad_labels_say_what_is_wrong(label: str, fragment: str) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_label(label)
    assert fragment in str(caught.value)
    assert label in str(caught.value)
    assert "archon:plan-<model>" in caught.value.usage


def test_separate_labels_combine() -> None:
    on_issue = ["bug", "archon:plan-opus", "archon:impl-kimi"]
    expected = RunRequest(models={Role.PLAN: "opus", Role.IMPL: "kimi"})
    assert request_from_labels("archon:plan-opus", on_issue) == expected
    assert request_from_labels("archon:impl-kimi", on_issue) == expected


def test_applied_label_wins_over_labels_already_on_the_issue() -> None:
    on_issue = ["archon:plan-opus impl-kimi", "archon:impl-opus"]
    combined = request_from_labels("archon:impl-opus", on_issue)
    assert combined == RunRequest(models={Role.PLAN: "opus", Role.IMPL: "opus"})


def test_other_labels_that_disagree_are_an_error() -> None:
    on_issue = ["archon:plan-opus", "archon:plan-kimi", "archon:impl-kimi"]
    with pytest.raises(TriggerError, match="disagree on `plan`"):
        request_from_labels("archon:impl-kimi", on_issue)


def test_other_labels_that_agree_are_fine() -> None:
    on_issue = ["archon:plan-opus", "archon:plan-opus eval-opus", "archon:impl-kimi"]
    combined = request_from_labels("archon:impl-kimi", on_issue)
    assert combined == RunRequest(models={Role.PLAN: "opus", Role.IMPL: "kimi", Role.EVAL: "opus"})


def test_bench_label_ignores_other_labels_and_is_ignored_by_them() -> None:
    assert request_from_labels("archon:bench", ["archon:plan-opus"]) == BenchRequest()
    assert request_from_labels("archon:plan-opus", ["archon:bench"]) == RunRequest(models={Role.PLAN: "opus"})


def test_label_workflow_is_filled_too() -> None:
    combined = request_from_labels("archon:plan-opus", ["archon:workflow-docs", "archon:plan-opus"])
    assert combined == RunRequest(models={Role.PLAN: "opus"}, workflow="docs")


def test_applied_label_that_is_not_ours() -> None:
    assert request_from_labels("bug", ["archon:plan-opus"]) is None


# --- comments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/archon run", RunRequest()),
        ("/archon run plan=opus impl=kimi", RunRequest(models={Role.PLAN: "opus", Role.IMPL: "kimi"})),
        ("/archon run plan-opus impl-kimi", RunRequest(models={Role.PLAN: "opus", Role.IMPL: "kimi"})),
        ("/ARCHON RUN Plan=Opus", RunRequest(models={Role.PLAN: "opus"})),
        ("  \n/archon run impl=kimi\nthanks!", RunRequest(models={Role.IMPL: "kimi"})),
        (
            "/archon run explore=haiku eval=sonnet workflow=fix-issue",
            RunRequest(models={Role.EXPLORE: "haiku", Role.EVAL: "sonnet"}, workflow="fix-issue"),
        ),
        ("/archon bench", BenchRequest()),
        (
            "/archon bench plan=opus,kimi impl=opus,kimi issues=#12,#15 repeat=3 prs=yes",
            BenchRequest(
                plan=("opus", "kimi"), impl=("opus", "kimi"), issues=(12, 15), repeat=3, open_prs=True
            ),
        ),
        ("/archon bench issues=12,#12 prs=no", BenchRequest(issues=(12,))),
        ("/archon bench explore=haiku eval=opus,kimi", BenchRequest(explore="haiku", eval=("opus", "kimi"))),
        ("/archon evaluate", EvaluateRequest()),
        ("/archon evaluate eval=opus,kimi", EvaluateRequest(eval=("opus", "kimi"))),
        ("/archon status", PlainRequest(kind="status")),
        ("/archon cancel", PlainRequest(kind="cancel")),
        ("/archon retry", PlainRequest(kind="retry")),
        ("/archon approve", PlainRequest(kind="approve")),
        ("/archon help", PlainRequest(kind="help")),
        ("/archon models", PlainRequest(kind="models")),
        ("/archon", PlainRequest(kind="help")),
        ("/archon revise use a lock instead", ReviseRequest(feedback="use a lock instead")),
        (
            "/archon revise\nKeep the public API.\n\nAdd a test.",
            ReviseRequest(feedback="Keep the public API.\n\nAdd a test."),
        ),
        ("/archon revise first line\nsecond", ReviseRequest(feedback="first line\nsecond")),
    ],
)
def test_commands(body: str, expected: object) -> None:
    assert parse_comment(body) == expected


@pytest.mark.parametrize(
    "body",
    ["", "hello", "please /archon run", "> /archon run", "/archonrun", "`/archon run`", "/arch run", None],
)
def test_comments_that_do_not_address_the_bot(body: str | None) -> None:
    assert not is_command(body)
    if body is not None:
        assert parse_comment(body) is None


@pytest.mark.parametrize(
    ("body", "fragment", "command"),
    [
        ("/archon launch", "`launch` is not an Archon command", None),
        ("/archon run plan", "is not an option", "run"),
        ("/archon run plan=", "needs a value", "run"),
        ("/archon run plan=opus plan=kimi", "given twice", "run"),
        ("/archon run plan=opus,kimi", "use `/archon bench`", "run"),
        ("/archon run issues=#3", "`issues` is not an option", "run"),
        ("/archon run plan=op@us", "not a model alias", "run"),
        ("/archon bench repeat=0", "from 1 to 10", "bench"),
        ("/archon bench repeat=many", "from 1 to 10", "bench"),
        ("/archon bench repeat=11", "from 1 to 10", "bench"),
        ("/archon bench issues=#x", "not an issue number", "bench"),
        ("/archon bench issues=#0", "not an issue number", "bench"),
        ("/archon bench prs=maybe", "`yes` or `no`", "bench"),
        ("/archon bench plan=,", "at least one model", "bench"),
        ("/archon evaluate plan=opus", "`plan` is not an option", "evaluate"),
        ("/archon status now", "takes no options", "status"),
        ("/archon help me", "takes no options", "help"),
        ("/archon revise", "needs your feedback", "revise"),
        ("/archon revise   \n  ", "needs your feedback", "revise"),
    ],
)
def test_malformed_commands_explain_themselves(body: str, fragment: str, command: str | None) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_comment(body)
    assert fragment in str(caught.value)
    if command:
        assert caught.value.usage == COMMANDS[CommandName(command)].usage


def test_unknown_command_lists_commands() -> None:
    with pytest.raises(TriggerError) as caught:
        parse_comment("/archon frobnicate")
    for name in CommandName:
        assert f"`{name}`" in str(caught.value)


def test_help_lists_every_command_and_marks_unavailable_ones() -> None:
    text = help_text()
    for info in COMMANDS.values():
        assert info.usage in text
    assert text.count("not available yet") == sum(not i.available for i in COMMANDS.values())
    assert "archon:bench" in text
