"""The bot's GitHub operations on one repository, over PyGithub. The only module that writes to GitHub.

Every comment the bot writes carries a marker (`markers`); `upsert_comment` looks for it first, so a
retried job, a duplicate job or a 5xx followed by a retry never posts twice.

Being the one writer, it is where redaction (`bot.secrets`) is certain to happen: every comment, pull
request title and body, review body and inline comment is redacted before it is sent, whoever wrote it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from github import Github, GithubException, UnknownObjectException
from github.IssueComment import IssueComment

from bot.github.markers import has_marker, with_marker
from bot.labels import LabelSpec
from bot.secrets import Redactor, default_redactor

log = logging.getLogger(__name__)

PULL_KIND = "pull"
REVIEW_KIND = "review"


@dataclass(frozen=True)
class PostedComment:
    id: int
    html_url: str


class RepoForge:
    """One repository, seen through an installation client."""

    def __init__(self, github: Github, full_name: str, redactor: Redactor | None = None) -> None:
        """`redactor` defaults to the process's (`bot.secrets.install`), looked up at each write."""
        self.full_name = full_name
        self.repo = github.get_repo(full_name)  # lazy: the client is built with lazy=True
        self._redactor = redactor

    def _redact(self, text: str) -> str:
        return (self._redactor or default_redactor()).redact(text)

    # --- who asked ---------------------------------------------------------------------------

    def permission(self, login: str) -> tuple[str, str]:
        """(permission, role name) of a user: `maintain` and `triage` only show in the role name."""
        try:
            permission = self.repo.get_collaborator_permission(login)
        except UnknownObjectException:
            return "none", "none"
        return permission, self.repo.get_collaborator_role_name(login)

    # --- reactions and comments ----------------------------------------------------------------

    def react(self, issue: int, comment_id: int | None, content: str = "eyes") -> None:
        target = self.repo.get_issue(issue)
        if comment_id is not None:
            target = target.get_comment(comment_id)
        target.create_reaction(content)

    def find_comment(self, issue: int, kind: str, key: str) -> IssueComment | None:
        for comment in self.repo.get_issue(issue).get_comments():
            if comment.user.type == "Bot" and has_marker(comment.body, kind, key):
                return comment
        return None

    def upsert_comment(self, issue: int, kind: str, key: str, body: str) -> PostedComment:
        """Create the comment with this marker, or edit the one that already exists."""
        body = self._redact(body)
        text = body if has_marker(body, kind, key) else with_marker(body, kind, key)
        existing = self.find_comment(issue, kind, key)
        if existing is None:
            created = self.repo.get_issue(issue).create_comment(text)
            return PostedComment(created.id, created.html_url)
        if existing.body != text:
            existing.edit(text)
        return PostedComment(existing.id, existing.html_url)

    def edit_comment(self, issue: int, comment_id: int, kind: str, key: str, body: str) -> PostedComment:
        """Edit a known comment; if it was deleted, post it again rather than lose the update."""
        try:
            comment = self.repo.get_issue(issue).get_comment(comment_id)
            comment.edit(self._redact(body))
            return PostedComment(comment.id, comment.html_url)
        except UnknownObjectException:
            log.warning("comment %s on %s#%s is gone; posting anew", comment_id, self.full_name, issue)
            return self.upsert_comment(issue, kind, key, body)

    # --- pull requests and reviews --------------------------------------------------------------

    def open_draft_pull(self, head: str, base: str, title: str, body: str, key: str) -> PostedComment:
        """Open a draft PR for `head`, or return the open one a previous attempt made (same branch).

        The body carries a `pull` marker keyed by the run, so a PR is recognisable as this run's even
        after people edit its title.
        """
        title, body = self._redact(title), self._redact(body)
        text = body if has_marker(body, PULL_KIND, key) else with_marker(body, PULL_KIND, key)
        owner = self.full_name.split("/", 1)[0]
        for pull in self.repo.get_pulls(state="open", head=f"{owner}:{head}"):
            if pull.body and has_marker(pull.body, PULL_KIND, key):
                return PostedComment(pull.number, pull.html_url)
        try:
            pull = self.repo.create_pull(base=base, head=head, title=title, body=text, draft=True)
        except GithubException as error:
            if error.status != 422:
                raise
            existing = next(iter(self.repo.get_pulls(state="open", head=f"{owner}:{head}")), None)
            if existing is None:
                raise
            pull = existing  # created by a request whose answer we never saw (a 5xx and a retry)
        return PostedComment(pull.number, pull.html_url)

    def pull_diff_files(self, number: int) -> list[tuple[str, str, str | None]]:
        """(filename, status, patch) of a pull request's files; patch is None for binary or huge files."""
        return [(f.filename, f.status, f.patch) for f in self.repo.get_pull(number).get_files()]

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
