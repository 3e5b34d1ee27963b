"""Webhook deliveries → tasks for the triage queue, or a reason to ignore them. Pure.

The web handler calls `route` after the signature check. It decides from the payload alone (no GitHub
call), so the handler answers in milliseconds; permission checks and replies happen in the triage job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.triggers import (
    Request,
    TriggerError,
    is_archon_label,
    is_command,
    parse_comment,
    request_from_labels,
)


class _Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delivery_id: str
    installation_id: int


class CommandTask(_Task):
    """Someone addressed the bot on an issue or pull request, by label or by comment."""

    kind: Literal["command"] = "command"
    repo: str
    issue: int
    is_pull_request: bool
    sender: str
    comment_id: int | None = Field(None, description="The triggering comment; None for a label.")
    trigger: str = Field(description="The label name or the command's first line, for people.")
    request: Request | None = None
    error: str | None = Field(None, description="Why the trigger could not be parsed.")
    usage: str | None = None
    issue_title: str | None = Field(
        None, description="The issue as this delivery saw it: a run works on this, not on later edits."
    )
    issue_body: str = ""
    issue_url: str = ""
    issue_author: str = ""


class LabelsTask(_Task):
    """The app was installed on repositories: create the labels people will need."""

    kind: Literal["labels"] = "labels"
    repos: tuple[str, ...]


Task = Annotated[CommandTask | LabelsTask, Field(discriminator="kind")]


class TaskEnvelope(BaseModel):
    """How tasks travel through RQ: plain JSON, validated again by the job."""

    task: Task


@dataclass(frozen=True)
class Ignored:
    reason: str


def route(event: str, payload: dict[str, Any], delivery_id: str, app_id: int | None) -> list[Task] | Ignored:
    """Decide what a delivery asks of the bot."""
    action = payload.get("action")
    handler = _HANDLERS.get((event, action)) or _HANDLERS.get((event, None))
    if handler is None:
        return Ignored(f"event `{event}` action `{action}` is not handled")
    return handler(payload, delivery_id, app_id)


def _installation_id(payload: dict[str, Any]) -> int | None:
    installation = payload.get("installation") or {}
    return installation.get("id")


def _bot_reason(payload: dict[str, Any], app_id: int | None, comment: dict | None) -> str | None:
    """Senders of type Bot (this app included) never trigger work, so the bot cannot loop."""
    if (payload.get("sender") or {}).get("type") == "Bot":
        return "sender is a bot"
    if comment is not None:
        via = comment.get("performed_via_github_app") or {}
        if app_id is not None and via.get("id") == app_id:
            return "comment was written by this app"
        if (comment.get("user") or {}).get("type") == "Bot":
            return "comment author is a bot"
    return None


def _command_task(payload: dict[str, Any], delivery_id: str, **fields: Any) -> CommandTask:
    issue = payload["issue"]
    return CommandTask(
        delivery_id=delivery_id,
        installation_id=_installation_id(payload),
        repo=payload["repository"]["full_name"],
        issue=issue["number"],
        is_pull_request="pull_request" in issue,
        sender=payload["sender"]["login"],
        **_snapshot(issue),
        **fields,
    )


def _snapshot(issue: dict[str, Any]) -> dict[str, Any]:
    """The issue's text as the maintainer's label or command found it.

    Runs work on this copy, so an author who edits the issue after a maintainer accepted it changes
    nothing. GitHub always sends `title` and `body` (null when empty); without them, there is no
    snapshot and the run reads the issue from the API.
    """
    if not isinstance(issue.get("title"), str) or "body" not in issue:
        return {}
    return {
        "issue_title": issue["title"],
        "issue_body": issue.get("body") or "",
        "issue_url": issue.get("html_url") or "",
        "issue_author": (issue.get("user") or {}).get("login") or "",
    }


def _parsed(parse: Any) -> dict[str, Any]:
    try:
        return {"request": parse()}
    except TriggerError as error:
        return {"error": str(error), "usage": error.usage}


def _issue_labeled(payload: dict[str, Any], delivery_id: str, app_id: int | None) -> list[Task] | Ignored:
    label = (payload.get("label") or {}).get("name")
    if not is_archon_label(label):
        return Ignored("label is not an `archon:` label")
    if reason := _bot_reason(payload, app_id, None):
        return Ignored(reason)
    if _installation_id(payload) is None:
        return Ignored("delivery has no installation")
    on_issue = [item["name"] for item in payload["issue"].get("labels") or []]
    fields = _parsed(lambda: request_from_labels(label, on_issue))
    return [_command_task(payload, delivery_id, trigger=f"label `{label}`", **fields)]


def _comment_created(payload: dict[str, Any], delivery_id: str, app_id: int | None) -> list[Task] | Ignored:
    comment = payload.get("comment") or {}
    body = comment.get("body") or ""
    if not is_command(body):
        return Ignored("comment does not start with `/archon`")
    if reason := _bot_reason(payload, app_id, comment):
        return Ignored(reason)
    if _installation_id(payload) is None:
        return Ignored("delivery has no installation")
    first_line = body.lstrip().partition("\n")[0].strip()[:200]
    fields = _parsed(lambda: parse_comment(body))
    return [
        _command_task(payload, delivery_id, comment_id=comment["id"], trigger=f"`{first_line}`", **fields)
    ]


def _installed(key: str) -> Any:
    def handler(payload: dict[str, Any], delivery_id: str, app_id: int | None) -> list[Task] | Ignored:
        repos = tuple(r["full_name"] for r in payload.get(key) or [])
        if not repos:
            return Ignored("no repositories in this installation event")
        return [LabelsTask(delivery_id=delivery_id, installation_id=_installation_id(payload), repos=repos)]

    return handler


_HANDLERS = {
    ("issues", "labeled"): _issue_labeled,
    ("issue_comment", "created"): _comment_created,
    ("installation", "created"): _installed("repositories"),
    ("installation_repositories", "added"): _installed("repositories_added"),
}
