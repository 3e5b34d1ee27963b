"""The bot's GitHub operations on one repository, over PyGithub. The only module that writes to GitHub.

Every comment the bot writes carries a marker (`markers`); `upsert_comment` looks for it first, so a
retried job, a duplicate job or a 5xx followed by a retry never posts twice.

Every write is retried here (tenacity) on 5xx, lost connections and secondary rate limits, within a
total budget (`RetryPolicy`). The transport (`bot.github.auth`) already retries idempotent calls a few
times; a POST it never repeats, because a POST whose answer was lost may have been performed. The
forge retries the whole operation instead, and each operation looks before it creates (a comment,
a pull request or a review by its marker, a check run by its name, head sha and external id), so a
retried create finds what the lost answer made.

Being the one writer, it is where redaction (`bot.secrets`) is certain to happen: every comment, pull
request title and body, review body and inline comment is redacted before it is sent, whoever wrote it.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import tenacity
from github import Github, GithubException, RateLimitExceededException, UnknownObjectException
from github.CheckRun import CheckRun
from github.IssueComment import IssueComment

from bot.github.markers import has_marker, with_marker
from bot.labels import LabelSpec
from bot.secrets import Redactor, default_redactor

log = logging.getLogger(__name__)

#: What a failed GitHub write raises (API errors, connections lost or timed out).
WRITE_ERRORS = (GithubException, requests.RequestException)

PULL_KIND = "pull"
REVIEW_KIND = "review"
#: How a superseded review (or plan) begins: a review that does is never superseded again.
SUPERSEDED_PREFIX = "> ⚠️ **Superseded**"


#: Seconds a write keeps trying, over all its attempts (each with the transport's quick retries).
WRITE_BUDGET_S = 60.0
#: The terminal status of a run (done, failed, cancelled, waiting) is worth waiting much longer for.
FINAL_BUDGET_S = 600.0
#: GitHub: after a secondary rate limit with neither `retry-after` nor `x-ratelimit-remaining: 0`,
#: "wait for at least one minute before retrying".
SECONDARY_RATE_WAIT_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a write is retried: exponential backoff with jitter, rate limits waited out as GitHub says,
    and no attempt started once `budget_s` (from the first attempt) would be passed."""

    budget_s: float = WRITE_BUDGET_S
    first_wait_s: float = 1.0
    max_wait_s: float = 15.0
    rate_limit_wait_s: float = SECONDARY_RATE_WAIT_S

    def retrying(self, what: str) -> tenacity.Retrying:
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.first_wait_s, max=self.max_wait_s, jitter=self.first_wait_s
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exception = state.outcome.exception() if state.outcome else None
            limited = rate_limit_wait(exception, self.rate_limit_wait_s)
            return limited if limited is not None else backoff(state)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            wait=wait,
            stop=tenacity.stop_before_delay(self.budget_s),
            before_sleep=lambda state: _log_retry(what, state),
            reraise=True,
        )


#: Writes: a minute. Final status: ten, waiting longer between tries. Once: the transport's retries only.
WRITES = RetryPolicy()
FINAL = RetryPolicy(budget_s=FINAL_BUDGET_S, first_wait_s=2.0, max_wait_s=60.0)
ONCE = RetryPolicy(budget_s=0.0)


def rate_limit_wait(error: BaseException | None, fallback: float) -> float | None:
    """Seconds to wait if `error` is a rate limit (GitHub's rules for 403/429), else None."""
    if not isinstance(error, GithubException) or error.status not in (403, 429):
        return None
    headers = {name.lower(): value for name, value in (error.headers or {}).items()}
    if (after := headers.get("retry-after", "")).strip().isdigit():
        return float(after)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return max(0.0, int(headers["x-ratelimit-reset"]) - time.time()) + 1
    message = str((error.data or {}).get("message", "")) if isinstance(error.data, dict) else ""
    if isinstance(error, RateLimitExceededException) or "rate limit" in message.lower():
        return fallback
    return None


def transient(error: BaseException) -> bool:
    """Worth another try: GitHub's 5xx, a rate limit, a connection lost or timed out."""
    if isinstance(error, GithubException):
        return error.status >= 500 or rate_limit_wait(error, 0.0) is not None
    return isinstance(error, requests.ConnectionError | requests.Timeout)


def _log_retry(what: str, state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    status = getattr(error, "status", None) or type(error).__name__
    log.warning(
        "GitHub %s failed (%s, attempt %d); retrying in %.1fs",
        what,
        status,
        state.attempt_number,
        state.upcoming_sleep,
    )


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """Run a `RepoForge` method under the forge's retry policy (the whole operation, looks included)."""

    @functools.wraps(method)
    def wrapper(self: RepoForge, *args: Any, **kwargs: Any) -> T:
        return self.policy.retrying(method.__name__)(method, self, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class CheckRunSpec:
    """A check run as the bot wants it to be; (name, head_sha, external_id) identifies it."""

    name: str
    head_sha: str
    external_id: str
    status: str  # queued, in_progress or completed
    conclusion: str | None = None  # with `completed`: success, failure, neutral, cancelled, …
    title: str = ""
    summary: str = ""
    details_url: str | None = None


@dataclass(frozen=True)
class InlineComment:
    """A review's comment on a line of the diff: what a reviewer asked, and where."""

    path: str
    line: int | None
    diff_hunk: str
    body: str


@dataclass(frozen=True)
class PostedComment:
    id: int
    html_url: str


@dataclass(frozen=True)
class PostedPull(PostedComment):
    """A pull request as GitHub answered it: `head_sha` is where its head was then (the run's push)."""

    head_sha: str = ""


class RepoForge:
    """One repository, seen through an installation client."""

    def __init__(
        self,
        github: Github,
        full_name: str,
        redactor: Redactor | None = None,
        policy: RetryPolicy = WRITES,
    ) -> None:
        """`redactor` defaults to the process's (`bot.secrets.install`), looked up at each write.
        `policy`: how writes are retried (tests give a short budget)."""
        self.full_name = full_name
        self.repo = github.get_repo(full_name)  # lazy: the client is built with lazy=True
        self._redactor = redactor
        self.policy = policy
        # Per-job caches (a forge lives for one job; `with_policy` copies share them):
        self._heads: dict[int, str] = {}  # pull number → head sha GitHub gave when the run opened it
        self._checks: dict[str, dict[tuple[str, str], int]] = {}  # head → (name, external id) → id

    def with_policy(self, policy: RetryPolicy) -> RepoForge:
        """The same forge, retrying its writes under `policy` (best-effort progress, the final status)."""
        other = copy.copy(self)
        other.policy = policy
        return other

    def _redact(self, text: str) -> str:
        return (self._redactor or default_redactor()).redact(text)

    # --- who asked ---------------------------------------------------------------------------

    def permission(self, login: str) -> tuple[str, str]:
        """(permission, role name) of a user: `maintain` and `triage` only show in the role name.

        One GET: PyGithub's `get_collaborator_permission` and `get_collaborator_role_name` each fetch
        the same document, so it is read once here and both fields taken from it."""
        url = f"{self.repo.url}/collaborators/{urllib.parse.quote(login)}/permission"
        try:
            _, data = self.repo.requester.requestJsonAndCheck("GET", url)
        except UnknownObjectException:
            return "none", "none"
        return data["permission"], data.get("role_name") or data["permission"]

    # --- reactions and comments ----------------------------------------------------------------

    @retried
    def react(self, issue: int, comment_id: int | None, content: str = "eyes") -> None:
        """GitHub answers 200 with the existing reaction when it is there already: safe to repeat."""
        target = self.repo.get_issue(issue)
        if comment_id is not None:
            target = target.get_comment(comment_id)
        target.create_reaction(content)

    def find_comment(self, issue: int, kind: str, key: str) -> IssueComment | None:
        for comment in self.repo.get_issue(issue).get_comments():
            if comment.user.type == "Bot" and has_marker(comment.body, kind, key):
                return comment
        return None

    @retried
    def upsert_comment(self, issue: int, kind: str, key: str, body: str) -> PostedComment:
        """Create the comment with this marker, or edit the one that already exists."""
        return self._upsert(issue, kind, key, body)

    def _upsert(self, issue: int, kind: str, key: str, body: str) -> PostedComment:
        body = self._redact(body)
        text = body if has_marker(body, kind, key) else with_marker(body, kind, key)
        existing = self.find_comment(issue, kind, key)
        if existing is None:
            created = self.repo.get_issue(issue).create_comment(text)
            return PostedComment(created.id, created.html_url)
        if existing.body != text:
            existing.edit(text)
        return PostedComment(existing.id, existing.html_url)

    @retried
    def edit_comment(self, issue: int, comment_id: int, kind: str, key: str, body: str) -> PostedComment:
        """Edit a known comment; if it was deleted, post it again rather than lose the update."""
        try:
            comment = self.repo.get_issue(issue).get_comment(comment_id)
            comment.edit(self._redact(body))
            return PostedComment(comment.id, comment.html_url)
        except UnknownObjectException:
            log.warning("comment %s on %s#%s is gone; posting anew", comment_id, self.full_name, issue)
            return self._upsert(issue, kind, key, body)

    # --- pull requests and reviews --------------------------------------------------------------

    @retried
    def open_draft_pull(self, head: str, base: str, title: str, body: str, key: str) -> PostedPull:
        """Open a draft PR for `head`, or return the open one a previous attempt made (same branch).

        The body carries a `pull` marker keyed by the run, so a PR is recognisable as this run's even
        after people edit its title.
        """
        title, body = self._redact(title), self._redact(body)
        text = body if has_marker(body, PULL_KIND, key) else with_marker(body, PULL_KIND, key)
        owner = self.full_name.split("/", 1)[0]
        for pull in self.repo.get_pulls(state="open", head=f"{owner}:{head}"):
            if pull.body and has_marker(pull.body, PULL_KIND, key):
                return self._posted_pull(pull)
        try:
            pull = self.repo.create_pull(base=base, head=head, title=title, body=text, draft=True)
        except GithubException as error:
            if error.status != 422:
                raise
            existing = next(iter(self.repo.get_pulls(state="open", head=f"{owner}:{head}")), None)
            if existing is None:
                raise
            pull = existing  # created by a request whose answer we never saw (a 5xx and a retry)
        return self._posted_pull(pull)

    def _posted_pull(self, pull: Any) -> PostedPull:
        """Remember the head GitHub reports for the pull request the run opened: the check runs that
        follow go on it, without reading the pull request back (`opened_head`)."""
        self._heads[pull.number] = pull.head.sha
        return PostedPull(pull.number, pull.html_url, pull.head.sha)

    def opened_head(self, number: int) -> str | None:
        """The head of a pull request this forge opened (or found open) in this job, as GitHub said."""
        return self._heads.get(number)

    @retried
    def edit_pull_body(self, number: int, body: str, key: str) -> None:
        """Replace the body of the run's pull request (a revision's row in its cost table), keeping its
        `pull` marker: the marker is how `open_draft_pull` recognises the pull request as the run's."""
        body = self._redact(body)
        text = body if has_marker(body, PULL_KIND, key) else with_marker(body, PULL_KIND, key)
        pull = self.repo.get_pull(number)
        if pull.body != text:  # a retry after a lost answer has nothing left to do
            pull.edit(body=text)

    @retried
    def reply_in_thread(self, number: int, comment_id: int, kind: str, key: str, body: str) -> PostedComment:
        """Reply in the review thread of `comment_id`, once per marker: a retried job (or a lost answer
        followed by a retry) finds the reply it made instead of posting a second one."""
        text = with_marker(self._redact(body), kind, key)
        pull = self.repo.get_pull(number)
        for comment in pull.get_review_comments():
            if comment.user.type == "Bot" and has_marker(comment.body, kind, key):
                return PostedComment(comment.id, comment.html_url)
        created = pull.create_review_comment_reply(comment_id, text)
        return PostedComment(created.id, created.html_url)

    def pull_diff_files(self, number: int) -> list[tuple[str, str, str | None]]:
        """(filename, status, patch) of a pull request's files; patch is None for binary or huge files."""
        return [(f.filename, f.status, f.patch) for f in self.repo.get_pull(number).get_files()]

    @retried
    def post_review(self, number: int, body: str, key: str, comments: list[dict]) -> int:
        """A COMMENT review (never approve or request changes), once per key."""
        pull = self.repo.get_pull(number)
        for review in pull.get_reviews():
            if review.body and has_marker(review.body, REVIEW_KIND, key):
                return review.id
        body = self._redact(body)
        text = body if has_marker(body, REVIEW_KIND, key) else with_marker(body, REVIEW_KIND, key)
        inline = [{**c, "body": self._redact(str(c["body"]))} if "body" in c else c for c in comments]
        return pull.create_review(body=text, event="COMMENT", comments=inline).id

    @retried
    def supersede_review(self, number: int, key: str, note: str) -> bool:
        """Put `note` (which starts with `SUPERSEDED_PREFIX`) at the top of the review with this marker,
        unless it is superseded already: a retry, or a later revision, leaves the first note as it is.
        False when there is no such review (never posted, or the answer to it was lost for good)."""
        note = self._redact(note)
        for review in self.repo.get_pull(number).get_reviews():
            if review.body and has_marker(review.body, REVIEW_KIND, key):
                if not review.body.startswith(SUPERSEDED_PREFIX):
                    review.edit(body=note + review.body)
                return True
        return False

    def latest_review_id(self, number: int, author: str, state: str) -> int | None:
        """The id of `author`'s latest review in `state` (e.g. CHANGES_REQUESTED) on the pull request."""
        found = [r for r in self.repo.get_pull(number).get_reviews() if r.user and r.user.login == author]
        return next((r.id for r in reversed(found) if r.state == state), None)

    def review_inline_comments(self, number: int, review_id: int) -> list[InlineComment]:
        """A review's inline comments (`GET .../reviews/{review_id}/comments`), oldest first."""
        comments = self.repo.get_pull(number).get_single_review_comments(review_id)
        return [
            InlineComment(
                path=c.path, line=c.line or c.original_line, diff_hunk=c.diff_hunk or "", body=c.body or ""
            )
            for c in comments
        ]

    def pull_head(self, number: int) -> str:
        """The sha a pull request's head is at now (check runs go on it)."""
        return self.repo.get_pull(number).head.sha

    # --- check runs -------------------------------------------------------------------------------

    def find_check_run(self, name: str, head_sha: str, external_id: str) -> CheckRun | None:
        """This bot's check run with this name and external id on this commit, if there is one."""
        for run in self.repo.get_commit(head_sha).get_check_runs(check_name=name, filter="all"):
            if run.external_id == external_id:
                return run
        return None

    def _known_checks(self, head_sha: str) -> dict[tuple[str, str], int]:
        """(name, external id) → id of every check run on the commit: listed once per job (all names at
        once), then kept up to date with the ones this forge creates. A create whose answer was lost
        drops the listing (`_put_check_run`), so the retry lists again and finds what it made."""
        if head_sha not in self._checks:
            listing = self.repo.get_commit(head_sha).get_check_runs(filter="all")
            self._checks[head_sha] = {(run.name, run.external_id or ""): run.id for run in listing}
        return self._checks[head_sha]

    @retried
    def create_check_run(self, check: CheckRunSpec) -> int:
        """Create the check run, or bring the one a previous attempt made (same name, head sha and
        external id) to this state: a retried job or a lost answer never makes a second one."""
        return self._put_check_run(check)

    def _put_check_run(self, check: CheckRunSpec) -> int:
        known = self._known_checks(check.head_sha)
        key = (check.name, check.external_id)
        try:
            if key in known:
                self._check_run(known[key]).edit(**self._check_fields(check))
                return known[key]
            created = self.repo.create_check_run(
                name=check.name, head_sha=check.head_sha, **self._check_fields(check)
            )
        except WRITE_ERRORS:
            self._checks.pop(check.head_sha, None)  # the write may have happened: look again on retry
            raise
        known[key] = created.id
        return created.id

    def _check_run(self, check_run_id: int) -> CheckRun:
        """A check run by id without reading it (the client is lazy): for an edit, one PATCH."""
        return self.repo.get_check_run(check_run_id)

    @retried
    def update_check_run(self, check_run_id: int, check: CheckRunSpec) -> int:
        """Bring a known check run to this state; if it is gone, create it rather than lose the update."""
        try:
            self._check_run(check_run_id).edit(**self._check_fields(check))
            return check_run_id
        except UnknownObjectException:
            self._checks.pop(check.head_sha, None)
            return self._put_check_run(check)

    def _check_fields(self, check: CheckRunSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {"external_id": check.external_id, "status": check.status}
        if check.conclusion is not None:
            fields["conclusion"] = check.conclusion
        if check.title:
            fields["output"] = {"title": self._redact(check.title), "summary": self._redact(check.summary)}
        if check.details_url:
            fields["details_url"] = check.details_url
        return fields

    # --- repository content and labels --------------------------------------------------------

    def issue(self, number: int) -> tuple[str, str, str]:
        """(title, body, html_url) of an issue or pull request."""
        issue = self.repo.get_issue(number)
        return issue.title, issue.body or "", issue.html_url

    def default_branch(self) -> str:
        return self.repo.default_branch

    def read_dir(self, path: str) -> dict[str, str]:
        """The files directly in a folder of the default branch, by path; {} when it does not exist."""
        try:
            listing = self.repo.get_contents(path)
        except UnknownObjectException:
            return {}
        entries = listing if isinstance(listing, list) else [listing]
        files = {}
        for entry in entries:
            if entry.type == "file" and (text := self.read_file(entry.path)) is not None:
                files[entry.path] = text
        return files

    def read_file(self, path: str) -> str | None:
        """A file from the default branch, or None if it does not exist."""
        try:
            content = self.repo.get_contents(path)
        except UnknownObjectException:
            return None
        if isinstance(content, list):
            raise IsADirectoryError(f"{path} is a directory in {self.full_name}")
        return content.decoded_content.decode()

    @retried
    def ensure_labels(self, specs: Iterable[LabelSpec]) -> list[str]:
        """Create the labels that are missing; never delete or rename one. Returns names created."""
        existing = {label.name.lower() for label in self.repo.get_labels()}
        created = []
        for spec in specs:
            if spec.name.lower() in existing:
                continue
            try:
                self.repo.create_label(spec.name, spec.color, spec.description)
                created.append(spec.name)
            except GithubException as error:
                if not _already_exists(error):
                    raise
        return created


def _already_exists(error: GithubException) -> bool:
    """A concurrent install created it first: GitHub answers 422 `already_exists`."""
    errors = (error.data or {}).get("errors", []) if isinstance(error.data, dict) else []
    return error.status == 422 and any(e.get("code") == "already_exists" for e in errors)
