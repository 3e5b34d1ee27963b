"""Webhook deliveries → tasks for the triage queue, or a reason to ignore them. Pure.

The web handler calls `route` after the signature check. It decides from the payload alone (no GitHub
call), so the handler answers in milliseconds; permission checks and replies happen in the triage job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.payloads import (
    Authored,
    Delivery,
    InstallationCreated,
    InstallationRepositoriesAdded,
    Issue,
    IssueCommentCreated,
    IssueDelivery,
    IssueLabeled,
    PullDelivery,
    PullRequestReviewCommentCreated,
    PullRequestReviewSubmitted,
)
from bot.triggers import (
    Request,
    ReviseRequest,
    TriggerError,
    is_archon_label,
    is_command,
    parse_comment,
    request_from_labels,
)

CHANGES_REQUESTED = "changes_requested"
#: The feedback of a "changes requested" review without a body: its inline comments say what.
NO_REVIEW_BODY = "The reviewer requested changes without a summary; address their review comments."


class ThreadRef(BaseModel):
    """Where in the diff a review-comment command was written: the thread is part of the feedback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    comment_id: int
    path: str = ""
    line: int | None = None
    diff_hunk: str = ""
    in_reply_to_id: int | None = Field(None, description="The thread's first comment, for a reply.")


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
    via: Literal["label", "comment", "review", "thread"] = "comment"
    thread: ThreadRef | None = None
    changes_requested: bool = Field(
        False, description="A review requesting changes, no command: it revises only where opted in."
    )
    review_id: int | None = Field(
        None, description="The review that requested changes: its inline comments are the feedback."
    )


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
    """Decide what a delivery asks of the bot.

    A delivery the bot acts on is validated first (`bot.payloads`); a wrong shape raises pydantic's
    `ValidationError`, which the web handler answers with a 400 naming the field.
    """
    action = payload.get("action")
    action = action if isinstance(action, str) or action is None else type(action).__name__
    entry = _HANDLERS.get((event, action))
    if entry is None:
        return Ignored(f"event `{event[:100]}` action `{str(action)[:100]}` is not handled")
    model, handler = entry
    return handler(model.model_validate(payload), delivery_id, app_id)


def _installation_id(delivery: Delivery) -> int | None:
    return delivery.installation.id if delivery.installation else None


def _refused(delivery: Delivery, app_id: int | None, comment: Authored | None) -> Ignored | None:
    """Why a delivery that asks for work is not taken: a bot wrote it, or no installation can act on it."""
    if reason := _bot_reason(delivery, app_id, comment):
        return Ignored(reason)
    if _installation_id(delivery) is None:
        return Ignored(NO_INSTALLATION)
    return None


def _command_refused(delivery: Delivery, app_id: int | None, comment: Authored, where: str) -> Ignored | None:
    """A comment-like text (comment, review body, review comment) that is no `/archon` command for us."""
    if not is_command(comment.body or ""):
        return Ignored(f"{where} does not start with `/archon`")
    return _refused(delivery, app_id, comment)


def _bot_reason(delivery: Delivery, app_id: int | None, comment: Authored | None) -> str | None:
    """Senders of type Bot (this app included) never trigger work, so the bot cannot loop."""
    if delivery.sender.type == "Bot":
        return "sender is a bot"
    if comment is not None:
        via = comment.performed_via_github_app
        if app_id is not None and via is not None and via.id == app_id:
            return "comment was written by this app"
        if comment.user is not None and comment.user.type == "Bot":
            return "comment author is a bot"
    return None


def _command_task(delivery: IssueDelivery, delivery_id: str, **fields: Any) -> CommandTask:
    issue = delivery.issue
    return CommandTask(
        delivery_id=delivery_id,
        installation_id=_installation_id(delivery),
        repo=delivery.repository.full_name,
        issue=issue.number,
        is_pull_request=issue.is_pull_request,
        sender=delivery.sender.login,
        **_snapshot(issue),
        **fields,
    )


def _snapshot(issue: Issue) -> dict[str, Any]:
    """The issue's text as the maintainer's label or command found it.

    Runs work on this copy, so an author who edits the issue after a maintainer accepted it changes
    nothing. GitHub always sends `title` and `body` (null when empty); without them, there is no
    snapshot and the run reads the issue from the API.
    """
    if issue.title is None or "body" not in issue.model_fields_set:
        return {}
    return {
        "issue_title": issue.title,
        "issue_body": issue.body or "",
        "issue_url": issue.html_url or "",
        "issue_author": (issue.user.login if issue.user else "") or "",
    }


def _parsed(parse: Any) -> dict[str, Any]:
    try:
        return {"request": parse()}
    except TriggerError as error:
        return {"error": str(error), "usage": error.usage}


def _issue_labeled(delivery: IssueLabeled, delivery_id: str, app_id: int | None) -> list[Task] | Ignored:
    label = delivery.label.name if delivery.label else None
    if not is_archon_label(label):
        return Ignored("label is not an `archon:` label")
    if refused := _refused(delivery, app_id, None):
        return refused
    on_issue = [item.name for item in delivery.issue.labels or []]
    fields = _parsed(lambda: request_from_labels(label, on_issue))
    return [_command_task(delivery, delivery_id, trigger=f"label `{label}`", via="label", **fields)]


def _comment_created(
    delivery: IssueCommentCreated, delivery_id: str, app_id: int | None
) -> list[Task] | Ignored:
    comment = delivery.comment
    if refused := _command_refused(delivery, app_id, comment, "comment"):
        return refused
    fields = _command_fields(comment.body or "")
    return [_command_task(delivery, delivery_id, comment_id=comment.id, **fields)]


def _pull_task(delivery: PullDelivery, delivery_id: str, **fields: Any) -> CommandTask:
    return CommandTask(
        delivery_id=delivery_id,
        installation_id=_installation_id(delivery),
        repo=delivery.repository.full_name,
        issue=delivery.pull_request.number,
        is_pull_request=True,
        sender=delivery.sender.login,
        **fields,
    )


def _command_fields(body: str) -> dict[str, Any]:
    """A command's request (or its parse error and usage), and its first line as the run's trigger."""
    first_line = body.lstrip().partition("\n")[0].strip()[:200]
    return {"trigger": f"`{first_line}`", **_parsed(lambda: parse_comment(body))}


def _review_submitted(
    delivery: PullRequestReviewSubmitted, delivery_id: str, app_id: int | None
) -> list[Task] | Ignored:
    """A review whose body is a command, or (for the repositories that opt in) one requesting changes."""
    review = delivery.review
    body = review.body or ""
    requested = review.state.lower() == CHANGES_REQUESTED
    if not is_command(body) and not requested:
        return Ignored("review body does not start with `/archon` and requests no changes")
    if refused := _refused(delivery, app_id, review):
        return refused
    if is_command(body):
        return [_pull_task(delivery, delivery_id, via="review", **_command_fields(body))]
    request = ReviseRequest(feedback=body.strip() or NO_REVIEW_BODY)
    return [
        _pull_task(
            delivery,
            delivery_id,
            trigger="a review requesting changes",
            via="review",
            request=request,
            changes_requested=True,
            review_id=review.id,
        )
    ]


def _review_comment_created(
    delivery: PullRequestReviewCommentCreated, delivery_id: str, app_id: int | None
) -> list[Task] | Ignored:
    """A command in a review-comment thread: the thread's place in the diff travels with it."""
    comment = delivery.comment
    if refused := _command_refused(delivery, app_id, comment, "review comment"):
        return refused
    thread = ThreadRef(
        comment_id=comment.id,
        path=comment.path,
        line=comment.line or comment.original_line,
        diff_hunk=comment.diff_hunk,
        in_reply_to_id=comment.in_reply_to_id,
    )
    fields = _command_fields(comment.body or "")
    return [_pull_task(delivery, delivery_id, via="thread", thread=thread, **fields)]


def _installed(
    delivery: InstallationCreated | InstallationRepositoriesAdded, delivery_id: str, app_id: int | None
) -> list[Task] | Ignored:
    added = (
        delivery.repositories if isinstance(delivery, InstallationCreated) else delivery.repositories_added
    )
    repos = tuple(repo.full_name for repo in added or [])
    if not repos:
        return Ignored("no repositories in this installation event")
    installation_id = _installation_id(delivery)
    if installation_id is None:
        return Ignored(NO_INSTALLATION)
    return [LabelsTask(delivery_id=delivery_id, installation_id=installation_id, repos=repos)]


NO_INSTALLATION = "delivery has no installation"

#: (event, action) → the payload model validated before the handler reads it, and the handler.
_HANDLERS: dict[tuple[str, str | None], tuple[type[Delivery], Callable[..., list[Task] | Ignored]]] = {
    ("issues", "labeled"): (IssueLabeled, _issue_labeled),
    ("issue_comment", "created"): (IssueCommentCreated, _comment_created),
    ("pull_request_review", "submitted"): (PullRequestReviewSubmitted, _review_submitted),
    ("pull_request_review_comment", "created"): (PullRequestReviewCommentCreated, _review_comment_created),
    ("installation", "created"): (InstallationCreated, _installed),
    ("installation_repositories", "added"): (InstallationRepositoriesAdded, _installed),
}
