"""The command surface in one table: every `/archon` command, where it works, who may use it, what
handles it, and its help.

Parsing (`bot.triggers`), the permission check and dispatch (`bot.triage`) and `/archon help` all read
this table, so a command is added, restricted or documented in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CommandName(StrEnum):
    RUN = "run"
    BENCH = "bench"
    EVALUATE = "evaluate"
    STATUS = "status"
    CANCEL = "cancel"
    RETRY = "retry"
    APPROVE = "approve"
    REVISE = "revise"
    REPLAN = "replan"
    HELP = "help"
    MODELS = "models"


class Where(StrEnum):
    """Where a command may be given: on an issue, on a pull request, or both."""

    ISSUE = "issue"
    PULL = "pull request"
    BOTH = "issue or pull request"

    def allows(self, is_pull_request: bool) -> bool:
        return self is Where.BOTH or (self is Where.PULL) == is_pull_request


@dataclass(frozen=True)
class CommandInfo:
    name: CommandName
    usage: str
    summary: str
    where: Where
    #: Read-only commands only show information: anyone who can comment may use them.
    read_only: bool
    #: The `bot.triage.Triage` method that carries the command out.
    handler: str
    #: `key=value` options accepted on the command line (for text commands: before the text).
    options: tuple[str, ...] = ()
    #: The rest of the comment is free text (feedback), required.
    text: bool = False
    available: bool = True


COMMANDS: dict[CommandName, CommandInfo] = {
    info.name: info
    for info in (
        CommandInfo(
            CommandName.RUN,
            "/archon run [plan=M] [impl=M] [explore=M] [eval=M] [workflow=W] [gate=plan]",
            "Plan and implement this issue (label tokens such as `plan-opus impl-kimi` work too).",
            Where.ISSUE,
            read_only=False,
            handler="run",
            options=("plan", "impl", "explore", "eval", "workflow", "gate"),
        ),
        CommandInfo(
            CommandName.BENCH,
            "/archon bench [plan=M,M] [impl=M,M] [issues=#12,#15] [repeat=K] [prs=yes]",
            "Run the plan × implement model matrix and compare quality, cost and time.",
            Where.ISSUE,
            read_only=False,
            handler="bench",
            options=("plan", "impl", "explore", "eval", "issues", "repeat", "prs"),
        ),
        CommandInfo(
            CommandName.EVALUATE,
            "/archon evaluate [eval=M]",
            "Score this pull request on the seven-dimension rubric (several models: a panel).",
            Where.PULL,
            read_only=False,
            handler="evaluate",
            options=("eval",),
        ),
        CommandInfo(
            CommandName.STATUS,
            "/archon status",
            "Show the runs on this issue, or this pull request's run and its revisions.",
            Where.BOTH,
            read_only=True,
            handler="status",
        ),
        CommandInfo(
            CommandName.CANCEL,
            "/archon cancel",
            "Stop the queued or running runs on this issue.",
            Where.ISSUE,
            read_only=False,
            handler="cancel",
        ),
        CommandInfo(
            CommandName.RETRY,
            "/archon retry",
            "Resume the last failed run from the node that failed.",
            Where.ISSUE,
            read_only=False,
            handler="retry",
        ),
        CommandInfo(
            CommandName.APPROVE,
            "/archon approve",
            "Continue a run that stopped at the plan gate.",
            Where.ISSUE,
            read_only=False,
            handler="approve",
        ),
        CommandInfo(
            CommandName.REVISE,
            "/archon revise [impl=M] <feedback>",
            "On an issue: re-plan a waiting run with your feedback. On the bot's pull request (a comment, "
            "a review or a review thread): new commits on its branch that address the feedback, then a "
            "fresh evaluation.",
            Where.BOTH,
            read_only=False,
            handler="revise",
            options=("impl",),
            text=True,
        ),
        CommandInfo(
            CommandName.REPLAN,
            "/archon replan [plan=M] [impl=M] <feedback>",
            "On the bot's pull request: write a new plan with your feedback (posted on the issue), "
            "then implement it on the same branch.",
            Where.PULL,
            read_only=False,
            handler="replan",
            options=("plan", "impl"),
            text=True,
        ),
        CommandInfo(
            CommandName.HELP, "/archon help", "Show this help.", Where.BOTH, read_only=True, handler="help"
        ),
        CommandInfo(
            CommandName.MODELS,
            "/archon models",
            "List the model aliases this repository can use.",
            Where.BOTH,
            read_only=True,
            handler="models",
        ),
    )
}

#: Commands anyone who can comment may use: they only show information.
READ_ONLY = frozenset(name for name, info in COMMANDS.items() if info.read_only)

LABEL_HELP = (
    "Labels: `archon:plan-<model> impl-<model>` (tokens: `plan-`, `impl-`, `explore-`, `eval-`, "
    "`workflow-`, `gate-plan`; space- or comma-separated) starts a run; `archon:bench` runs the model "
    "matrix. "
    "Several `archon:` labels combine: the label just applied wins, the others on the issue fill "
    "the roles it leaves open."
)
WRONG_PLACE = "`/archon {name}` works on {where}s; #{number} is {what}."


def help_text() -> str:
    """The reply to `/archon help` and the tail of every syntax error."""
    rows = [
        f"| `{i.usage}` | {i.where} | {i.summary}{'' if i.available else ' *(not available yet)*'} |"
        for i in COMMANDS.values()
    ]
    return "\n".join(["| Command | Where | What it does |", "| --- | --- | --- |", *rows, "", LABEL_HELP])


def wrong_place(name: CommandName, number: int, is_pull_request: bool) -> str | None:
    """Why a command cannot be used here, or None when it can."""
    info = COMMANDS[name]
    if info.where.allows(is_pull_request):
        return None
    what = "a pull request" if is_pull_request else "an issue"
    return WRONG_PLACE.format(name=name, where=info.where, number=number, what=what)
