"""The webhook payloads the bot acts on, as pydantic models of exactly the fields it reads.

A signed delivery is still input: GitHub's schema grows and a bug or a replayed test delivery can carry
anything. Each handled delivery is validated here before `bot.events` reads a field, so a wrong shape
is a 400 naming the field (`issue.number: Input should be a valid integer`), never a 500 deep in a
handler. Fields the bot does not read are allowed and ignored: not copied into the models either (a
delivery is mostly fields the bot never reads, and keeping them cost more than validating the rest).
Validation is strict (no "12" → 12), so what is queued is exactly what GitHub sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

MAX_DEPTH = 64  # GitHub's payloads nest fewer than 10 levels; anything deeper is not from GitHub.
MAX_ERRORS = 5  # A refusal names the first few bad fields; the rest would only repeat the point.

DEEP_JSON = f"JSON nested deeper than {MAX_DEPTH} levels"
MALFORMED_JSON = "malformed JSON: {error}"
NOT_AN_OBJECT = "the payload must be a JSON object"

#: GitHub's ids and numbers are positive 64-bit integers.
GitHubId = Annotated[int, Field(gt=0, lt=2**63)]


def _full_name(value: str) -> str:
    if value.split("/")[-1] in {".", ".."}:
        raise ValueError("a repository is not named `.` or `..`")
    return value


#: `owner/name`, as GitHub allows them; it becomes part of API paths and of the mirror's directory.
FullName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{1,100}/[A-Za-z0-9_.-]{1,100}$"), AfterValidator(_full_name)
]


class PayloadError(ValueError):
    """The body is not a JSON object the bot can safely read; the message says why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def _encodable(value: str) -> str:
    """JSON may carry a lone surrogate (`"\\ud800"`) that no UTF-8 encoder accepts: the text is queued,
    logged, sent to models and posted back, so such a code point becomes `?` here, once."""
    if value.isascii():  # most text, and no surrogate: skip the two copies
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


#: Text people wrote (titles, bodies, label names), made safe to encode.
Text = Annotated[str, AfterValidator(_encodable)]

#: A GitHub login (`octocat`, `dependabot[bot]`, an enterprise's `name_short`); it is mentioned in replies.
Login = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\[bot\])?$")]


class Account(_Model):
    """A `sender` or a `user`: who acted, and whether it is a bot."""

    login: Login
    type: str | None = None


class Installation(_Model):
    id: GitHubId


class App(_Model):
    """`performed_via_github_app`: the App that wrote a comment."""

    id: GitHubId | None = None


class Label(_Model):
    name: Text


class Repository(_Model):
    full_name: FullName


class Issue(_Model):
    number: GitHubId
    title: Text | None = None
    body: Text | None = None
    html_url: Text | None = None
    user: Account | None = None
    labels: list[Label] | None = None
    pull_request: dict[str, Any] | None = Field(None, description="Present only on pull requests.")

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Authored(_Model):
    """Text someone wrote on GitHub that may carry a command: who wrote it, and through which app."""

    id: GitHubId
    body: Text | None = None
    user: Account | None = None
    performed_via_github_app: App | None = None


class Comment(Authored):
    """An issue or pull-request comment."""


class Delivery(_Model):
    action: str
    sender: Account
    installation: Installation | None = None


class IssueDelivery(Delivery):
    repository: Repository
    issue: Issue


class IssueLabeled(IssueDelivery):
    """`issues.labeled`."""

    label: Label | None = None


class IssueCommentCreated(IssueDelivery):
    """`issue_comment.created`."""

    comment: Comment


class PullRequest(_Model):
    """The `pull_request` of a review or review-comment delivery."""

    number: GitHubId
    title: Text | None = None
    html_url: Text | None = None
    user: Account | None = None


class Review(Authored):
    """A pull-request review; its body may be empty."""

    state: str = Field(description="`commented`, `approved` or `changes_requested` (lower case).")


class ReviewComment(Comment):
    """A comment on a line of the diff, the first of a thread or a reply in it."""

    path: Text = ""
    line: int | None = None
    original_line: int | None = None
    diff_hunk: Text = ""
    in_reply_to_id: GitHubId | None = None


class PullDelivery(Delivery):
    repository: Repository
    pull_request: PullRequest


class PullRequestReviewSubmitted(PullDelivery):
    """`pull_request_review.submitted`."""

    review: Review


class PullRequestReviewCommentCreated(PullDelivery):
    """`pull_request_review_comment.created`."""

    comment: ReviewComment


class InstallationCreated(Delivery):
    """`installation.created`."""

    repositories: list[Repository] | None = None


class InstallationRepositoriesAdded(Delivery):
    """`installation_repositories.added`."""

    repositories_added: list[Repository] | None = None


def describe(error: ValidationError) -> str:
    """`issue.number: Input should be a valid integer; …`: the field path first, for people."""
    parts = []
    for item in error.errors(include_url=False)[:MAX_ERRORS]:
        path = ".".join(str(part) for part in item["loc"]) or "payload"
        parts.append(f"{path}: {item['msg']}")
    more = error.error_count() - MAX_ERRORS
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def loads(body: bytes | str) -> dict[str, Any]:
    """Parse a delivery body into a JSON object no deeper than MAX_DEPTH; `PayloadError` otherwise.

    pydantic-core's parser (Rust, half the time of `json.loads` on a delivery) reads it; what it refuses
    is read again by `json.loads`, which decides: it accepts lone surrogates (`"\\ud800"`, which
    `_encodable` later makes safe) where the Rust parser does not, and its errors are the ones people see.
    The depth is then checked on the parsed value without recursion, so nothing later (validation,
    logging, jsonify) recurses into a hostile structure.
    """
    try:
        payload = from_json(body)
    except ValueError:  # malformed, a lone surrogate, nested past its own limit (200): json decides
        payload = _loads_stdlib(body)
    if not isinstance(payload, dict):
        raise PayloadError(NOT_AN_OBJECT)
    if depth(payload, MAX_DEPTH) > MAX_DEPTH:
        raise PayloadError(DEEP_JSON)
    return payload


def _loads_stdlib(body: bytes | str) -> Any:
    """`json.loads`, its refusals as `PayloadError`s. The C parser guards itself with RecursionError
    (which would be a 500)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise PayloadError(DEEP_JSON) from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer of 5,000 digits
        raise PayloadError(MALFORMED_JSON.format(error=error)) from None


def depth(value: Any, limit: int) -> int:
    """How deeply `value` nests lists and dicts (a scalar is 0), counting no further than `limit + 1`.

    Level by level, keeping only the containers of each, with exact type checks (what `json.loads`
    builds): this runs on every delivery, and a stack of (item, level) pairs cost three times as much."""
    level = [value] if type(value) is dict or type(value) is list else []
    deepest = 0
    while level:
        deepest += 1
        if deepest > limit:
            return deepest
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
    return deepest
