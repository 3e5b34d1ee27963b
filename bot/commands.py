"""The command surface in one table: every `/archon` command, its syntax, and whether it works yet.

`triggers` parses against this table, `/archon help` renders it, and triage refuses the commands whose
feature has not shipped with a reply that says so (never silence, never a pretend success).
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
    HELP = "help"
    MODELS = "models"


@dataclass(frozen=True)
class CommandInfo:
    name: CommandName
    usage: str
    summary: str
    available: bool
    on_pull_request_only: bool = False


COMMANDS: dict[CommandName, CommandInfo] = {
    info.name: info
    for info in (
        CommandInfo(
            CommandName.RUN,
            "/archon run [plan=M] [impl=M] [explore=M] [eval=M] [workflow=W] [gate=plan]",
            "Plan and implement this issue (label tokens such as `plan-opus impl-kimi` work too).",
            available=True,
        ),
        CommandInfo(
            CommandName.BENCH,
            "/archon bench [plan=M,M] [impl=M,M] [issues=#12,#15] [repeat=K] [prs=yes]",
            "Run the plan × implement model matrix and compare quality, cost and time.",
            available=True,
        ),
        CommandInfo(
            CommandName.EVALUATE,
            "/archon evaluate [eval=M]",
            "Score this pull request on the seven-dimension rubric (several models: a panel).",
            available=True,
            on_pull_request_only=True,
        ),
        CommandInfo(CommandName.STATUS, "/archon status", "Show the runs on this issue.", available=True),
        CommandInfo(
            CommandName.CANCEL,
            "/archon cancel",
            "Stop the queued or running runs on this issue.",
            available=True,
        ),
        CommandInfo(
            CommandName.RETRY,
            "/archon retry",
            "Resume the last failed run from the node that failed.",
            available=True,
        ),
        CommandInfo(
            CommandName.APPROVE,
            "/archon approve",
            "Continue a run that stopped at the plan gate.",
            available=True,
        ),
        CommandInfo(
            CommandName.REVISE,
            "/archon revise <feedback>",
            "Re-plan with your feedback (text after the command, may span lines).",
            available=True,
        ),
        CommandInfo(CommandName.HELP, "/archon help", "Show this help.", available=True),
        CommandInfo(
            CommandName.MODELS,
            "/archon models",
            "List the model aliases this repository can use.",
            available=True,
        ),
    )
}

LABEL_HELP = (
    "Labels: `archon:plan-<model> impl-<model>` (tokens: `plan-`, `impl-`, `explore-`, `eval-`, "
    "`workflow-`, `gate-plan`; space- or comma-separated) starts a run; `archon:bench` runs the model "
    "matrix. "
    "Several `archon:` labels combine: the label just applied wins, the others on the issue fill "
    "the roles it leaves open."
)


def help_text() -> str:
    """The reply to `/archon help` and the tail of every syntax error."""
    rows = [
        f"| `{info.usage}` | {info.summary}{'' if info.available else ' *(not available yet)*'} |"
        for info in COMMANDS.values()
    ]
    return "\n".join(["| Command | What it does |", "| --- | --- |", *rows, "", LABEL_HELP])
