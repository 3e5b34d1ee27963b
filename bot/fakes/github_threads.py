"""Pull request review comments (the threads on a diff) for the fake GitHub.

A review comment sits on a line of the pull request's diff: GitHub answers 422 for any other line,
gives it the `diff_hunk` up to that line, and keeps replies in the thread of a top-level comment
(`in_reply_to_id`; GitHub does not accept a reply to a reply). Inline comments posted with a review
(`POST .../reviews` with `comments[]`) become review comments too, carrying the review's id, and are
listed per review (`GET .../reviews/{review_id}/comments`, GitHub's `review-comment` shape).

A mixin of `FakeGitHub`, like `github_ops.Operations`.
"""

from __future__ import annotations

from typing import Any

from unidiff import PatchSet
from werkzeug.wrappers import Request

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp
from bot.fakes.github_state import Call, GitHubError, Repo, _association, _paginate, _require_string

THREAD_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/repos/<owner>/<repo>/pulls/<int:number>/comments", "list_review_comments"),
    ("GET", "/repos/<owner>/<repo>/pulls/comments/<int:comment_id>", "get_review_comment"),
    (
        "POST",
        "/repos/<owner>/<repo>/pulls/<int:number>/comments/<int:comment_id>/replies",
        "reply_review_comment",
    ),
    (
        "GET",
        "/repos/<owner>/<repo>/pulls/<int:number>/reviews/<int:review_id>/comments",
        "list_review_comments_of_review",
    ),
)


def diff_hunk(diff_text: str, path: str, line: int, side: str = "RIGHT") -> str | None:
    """The hunk of `path` holding `line`, from its header down to that line (GitHub's `diff_hunk`)."""
    for patched in PatchSet(diff_text):
        if patched.path != path:
            continue
        for hunk in patched:
            text = [str(hunk).splitlines()[0]]
            for row in hunk:
                text.append(str(row).rstrip("\n"))
                number = row.target_line_no if side == "RIGHT" else row.source_line_no
                if number == line and (side == "RIGHT" or not row.is_added):
                    return "\n".join(text)
    return None


class ThreadOperations:
    """Review comment operations and the test-side helpers that seed and read threads."""

    # --- seeding and reading (tests) -------------------------------------------------------------

    def add_review(
        self,
        full_name: str,
        number: int,
        body: str = "",
        *,
        author: str,
        event: str = "COMMENT",
        comments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A review someone submitted (`event`: COMMENT, APPROVE or REQUEST_CHANGES), its inline
        `comments` ({path, line, side?, body}) becoming review comments. Returns the review as the API
        shows it (what a `pull_request_review` webhook carries)."""
        with self._changed:
            self._user(author)
            repo = self._repo(full_name)
            review = self._submit_review(repo, self._pull(repo, number), body, event, author, comments or [])
            self._changed.notify_all()
            return review

    def add_review_comment(
        self,
        full_name: str,
        number: int,
        body: str,
        *,
        author: str,
        path: str | None = None,
        line: int | None = None,
        side: str = "RIGHT",
        in_reply_to: int | None = None,
    ) -> dict[str, Any]:
        """A review comment by someone else: a thread's first comment (`path` and `line` on the diff)
        or a reply (`in_reply_to`, a top-level comment). Returns it as the API shows it (what a
        `pull_request_review_comment` webhook carries)."""
        with self._changed:
            self._user(author)
            repo = self._repo(full_name)
            pull = self._pull(repo, number)
            if in_reply_to is not None:
                stored = self._reply(repo, pull, in_reply_to, body, author)
            else:
                spec = {"path": path, "line": line, "side": side, "body": body}
                if problems := gp.unanchored(self._diff(repo, pull), [spec]):
                    raise ValueError("; ".join(problems))
                stored = self._new_review_comment(repo, pull, spec, author, next(self._ids))
            self._changed.notify_all()
            return self._review_comment_body(stored)

    def review_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Review comments on a pull request as the API shows them, oldest first."""
        with self._lock:
            repo = self._repo(full_name)
            return [self._review_comment_body(c) for c in self._pull_review_comments(repo, number)]

    # --- operations ------------------------------------------------------------------------------

    def _op_list_review_comments(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        self._pull(found, number)
        items = [self._review_comment_body(c) for c in self._pull_review_comments(found, number)]
        page, headers = _paginate(request, items)
        return 200, page, headers

    def _op_list_review_comments_of_review(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int, review_id: int
    ) -> tuple:
        """A review's inline comments; 404 for a review the pull request does not have, as on GitHub."""
        found = self._need_repo(call, owner, repo)
        pull = self._pull(found, number)
        if not any(r["id"] == review_id for r in pull.reviews):
            raise GitHubError(404, "Not Found")
        stored = [c for c in self._pull_review_comments(found, number) if c["review_id"] == review_id]
        page, headers = _paginate(request, [self._of_review_body(c) for c in stored])
        return 200, page, headers

    def _of_review_body(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The `review-comment` schema: a review comment with its (legacy) diff positions."""
        body = self._review_comment_body(stored)
        position = self._position(stored)
        return {**body, "position": position, "original_position": position or 1}

    def _position(self, stored: dict[str, Any]) -> int | None:
        """The comment's line counted in the file's diff below its first `@@` header (GitHub's
        `position`), from the stored hunk: rows of earlier hunks are not counted (good enough here)."""
        rows = stored["diff_hunk"].splitlines()
        return len(rows) - 1 if len(rows) > 1 else None

    def _op_get_review_comment(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, comment_id: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        return 200, self._review_comment_body(self._find_review_comment(found, comment_id)), {}

    def _op_reply_review_comment(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int, comment_id: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        text = _require_string(body, "body")
        stored = self._reply(found, self._pull(found, number), comment_id, text, self.bot_login)
        created = self._review_comment_body(stored)
        return 201, created, {"Location": created["url"]}

    # --- state helpers ---------------------------------------------------------------------------

    def _diff(self, repo: Repo, pull: gp.Pull) -> str:
        assert repo.git_dir is not None
        return gp.pull_diff(repo.git_dir, pull)

    def _submit_review(
        self, repo: Repo, pull: gp.Pull, text: str, event: str, author: str, comments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Record a review and turn its inline comments into review comments (422 if one is off the diff)."""
        if problems := gp.unanchored(self._diff(repo, pull), comments):
            raise GitHubError(422, "Unprocessable Entity", errors=problems)
        kind = "Bot" if author == self.bot_login else "User"
        rid = next(self._ids)
        review = gp.review_body(
            self.urls, repo.full_name, pull, rid, self._user(author, kind=kind), text, event
        )
        if author != self.bot_login:
            review["author_association"] = _association(repo, author)
        for spec in comments:
            self._new_review_comment(repo, pull, spec, author, rid)
        pull.reviews.append({**review, "comments": comments})
        return review

    def _new_review_comment(
        self, repo: Repo, pull: gp.Pull, spec: dict[str, Any], author: str, review_id: int
    ) -> dict[str, Any]:
        side = spec.get("side") or "RIGHT"
        cid = next(self._ids)
        stamp = obj.now()
        stored = {
            "id": cid,
            "repo": repo.full_name,
            "number": pull.number,
            "review_id": review_id,
            "path": spec["path"],
            "line": spec["line"],
            "side": side,
            "start_line": spec.get("start_line"),
            "start_side": spec.get("start_side"),
            "body": str(spec.get("body", "")),
            "author": author,
            "in_reply_to": None,
            "commit_id": pull.head_sha,
            "diff_hunk": diff_hunk(self._diff(repo, pull), spec["path"], spec["line"], side) or "",
            "created_at": stamp,
            "updated_at": stamp,
        }
        self._review_comments[cid] = stored
        return stored

    def _reply(self, repo: Repo, pull: gp.Pull, comment_id: int, text: str, author: str) -> dict[str, Any]:
        root = self._find_review_comment(repo, comment_id)
        if root["number"] != pull.number:
            raise GitHubError(404, "Not Found")
        if root["in_reply_to"] is not None:
            raise GitHubError(
                422, "Validation Failed", errors=["replies to replies are not supported; reply to the root"]
            )
        cid = next(self._ids)
        stamp = obj.now()
        reply = {
            **root,
            "id": cid,
            "review_id": next(self._ids),  # GitHub files each reply under a review of its own
            "body": text,
            "author": author,
            "in_reply_to": root["id"],
            "created_at": stamp,
            "updated_at": stamp,
        }
        self._review_comments[cid] = reply
        return reply

    def _find_review_comment(self, repo: Repo, comment_id: int) -> dict[str, Any]:
        stored = self._review_comments.get(comment_id)
        if stored is None or stored["repo"] != repo.full_name:
            raise GitHubError(404, "Not Found")
        return stored

    def _pull_review_comments(self, repo: Repo, number: int) -> list[dict[str, Any]]:
        return [
            c for c in self._review_comments.values() if c["repo"] == repo.full_name and c["number"] == number
        ]

    def _review_comment_body(self, stored: dict[str, Any]) -> dict[str, Any]:
        full_name, cid = stored["repo"], stored["id"]
        bot = stored["author"] == self.bot_login
        api = f"{self.urls.api}/repos/{full_name}/pulls/comments/{cid}"
        pull_api = f"{self.urls.api}/repos/{full_name}/pulls/{stored['number']}"
        html = f"{self.urls.web}/{full_name}/pull/{stored['number']}#discussion_r{cid}"
        body: dict[str, Any] = {
            "url": api,
            "id": cid,
            "node_id": obj.node_id("PRRC", cid),
            "pull_request_review_id": stored["review_id"],
            "diff_hunk": stored["diff_hunk"],
            "path": stored["path"],
            "commit_id": stored["commit_id"],
            "original_commit_id": stored["commit_id"],
            "user": self._user(stored["author"], kind="Bot" if bot else "User"),
            "body": stored["body"],
            "created_at": stored["created_at"],
            "updated_at": stored["updated_at"],
            "html_url": html,
            "pull_request_url": pull_api,
            "author_association": "NONE" if bot else _association(self._repo(full_name), stored["author"]),
            "_links": {"self": {"href": api}, "html": {"href": html}, "pull_request": {"href": pull_api}},
            "start_line": stored["start_line"],
            "original_start_line": stored["start_line"],
            "line": stored["line"],
            "original_line": stored["line"],
            "side": stored["side"],
            "subject_type": "line",
            "reactions": obj.reaction_rollup(api, []),
        }
        if stored["start_side"] is not None:  # nullable with an enum: OpenAPI 3.0 validators reject null
            body["start_side"] = stored["start_side"]
        if stored["in_reply_to"] is not None:
            body["in_reply_to_id"] = stored["in_reply_to"]
        return body
