"""The fake GitHub's REST operations, one method per operation in `ROUTES` (named `_op_<endpoint>`).

A mixin of `FakeGitHub`: it reads and changes the state through the helpers `FakeGitHub` defines
(`_need_repo`, `_user`, `_issue`, …), and answers with bodies from `github_objects`.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp
from bot.fakes.github_state import (
    ROLE_TO_PERMISSION,
    Call,
    GitHubError,
    Issue,
    Repo,
    _paginate,
    _permission_flags,
    _require_string,
)


class Operations:
    """Operations of the fake GitHub (see `FakeGitHub`)."""

    # --- operations: the App -------------------------------------------------------------------

    def _app_body(self) -> dict[str, Any]:
        return obj.app(self.urls, self.app_id, self.slug, self._user("archon-owner", kind="Organization"))

    def _op_get_app(self, request: Request, call: Call, body: Any) -> tuple:
        self._need_app(call)
        return 200, self._app_body(), {}

    def _op_repo_installation(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        self._need_app(call)
        found = self._repos.get(f"{owner}/{repo}".lower())
        if found is None:
            raise GitHubError(404, "Not Found")
        return 200, self._installation_body(found.installation), {}

    def _installation_body(self, iid: int) -> dict[str, Any]:
        account = self._user(self._installations[iid], kind="Organization")
        return obj.installation(self.urls, iid, self._app_body(), account)

    def _op_access_token(self, request: Request, call: Call, body: Any, installation_id: int) -> tuple:
        self._need_app(call)
        if installation_id not in self._installations:
            raise GitHubError(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        self._tokens[token] = (installation_id, expiry.timestamp())
        answer = {
            "token": token,
            "expires_at": expiry.strftime(obj.ISO),
            "permissions": self._app_body()["permissions"],
            "repository_selection": "selected",
        }
        return 201, answer, {}

    def _op_installation_repos(self, request: Request, call: Call, body: Any) -> tuple:
        if not call.auth.startswith("installation:"):
            raise GitHubError(401, "Requires authentication")
        iid = int(call.auth.split(":")[1])
        repos = [self._repo_body(r) for r in self._repos.values() if r.installation == iid]
        page, headers = _paginate(request, repos)
        return (
            200,
            {"total_count": len(repos), "repository_selection": "selected", "repositories": page},
            headers,
        )

    def _op_manifest_conversion(self, request: Request, call: Call, body: Any, code: str) -> tuple:
        conversion = self._manifest_codes.pop(code, None)
        if conversion is None:
            raise GitHubError(404, "Not Found")
        return 201, conversion, {}

    # --- operations: repositories, issues, comments ----------------------------------------------

    def _repo_body(self, repo: Repo) -> dict[str, Any]:
        owner = self._user(repo.full_name.split("/", 1)[0], kind="Organization")
        return obj.repository(
            self.urls,
            repo.rid,
            repo.full_name,
            owner,
            default_branch=repo.default_branch,
            clone_url=repo.clone_url,
        )

    def _op_get_repo(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        return 200, self._repo_body(self._need_repo(call, owner, repo)), {}

    def _op_get_issue(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        return 200, self._issue_body(found, self._issue(found, number)), {}

    def _op_list_comments(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        self._issue(found, number)
        items = [self._comment_body(c) for c in self._issue_comments(found, number)]
        page, headers = _paginate(request, items)
        return 200, page, headers

    def _op_create_comment(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        text = _require_string(body, "body")
        self._issue(found, number)
        created = self._create_comment(found, number, text, self.bot_login, bot=True)
        return 201, self._comment_body(created), {"Location": created["url"]}

    def _op_get_comment(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, comment_id: int
    ) -> tuple:
        return 200, self._comment_body(self._find_comment(call, owner, repo, comment_id)), {}

    def _op_edit_comment(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, comment_id: int
    ) -> tuple:
        comment = self._find_comment(call, owner, repo, comment_id)
        if comment["author"] != self.bot_login:
            raise GitHubError(403, "Resource not accessible by integration")
        comment["body"] = _require_string(body, "body")
        comment["updated_at"] = obj.now()
        comment["edits"] += 1
        return 200, self._comment_body(comment), {}

    def _op_comment_reaction(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, comment_id: int
    ) -> tuple:
        comment = self._find_comment(call, owner, repo, comment_id)
        return self._react(comment["reactions"], body)

    def _op_issue_reaction(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        return self._react(self._issue(found, number).reactions, body)

    def _react(self, reactions: list[dict[str, Any]], body: Any) -> tuple:
        content = _require_string(body, "content")
        if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "Reaction", "code": "invalid", "field": "content"}],
            )
        mine = self._user(self.bot_login, kind="Bot")
        for existing in reactions:
            if existing["content"] == content and existing["user"]["login"] == mine["login"]:
                return 200, existing, {}
        rid = next(self._ids)
        reaction = {
            "id": rid,
            "node_id": obj.node_id("RE", rid),
            "user": mine,
            "content": content,
            "created_at": obj.now(),
        }
        reactions.append(reaction)
        return 201, reaction, {}

    def _op_issue_labels(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        names = self._issue(found, number).labels
        page, headers = _paginate(request, [self._label_for(found, n) for n in names])
        return 200, page, headers

    def _op_collaborator_permission(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, username: str
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        if username not in self._users:
            raise GitHubError(404, f"{username} is not a user")
        role = found.collaborators.get(username, "read")  # everyone may read a public repository
        person = {**self._users[username], "role_name": role, "permissions": _permission_flags(role)}
        return 200, {"permission": ROLE_TO_PERMISSION[role], "role_name": role, "user": person}, {}

    def _op_list_labels(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        found = self._need_repo(call, owner, repo)
        page, headers = _paginate(request, list(found.labels.values()))
        return 200, page, headers

    def _op_create_label(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        found = self._need_repo(call, owner, repo)
        name = _require_string(body, "name")
        if name.lower() in found.labels:
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "Label", "code": "already_exists", "field": "name"}],
            )
        color = str(body.get("color") or "ededed").lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
            raise GitHubError(
                422, "Validation Failed", errors=[{"resource": "Label", "code": "invalid", "field": "color"}]
            )
        label = obj.label(self.urls, found.full_name, next(self._ids), name, color, body.get("description"))
        found.labels[name.lower()] = label
        return 201, label, {}

    def _op_get_label(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, name: str
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        if name.lower() not in found.labels:
            raise GitHubError(404, "Not Found")
        return 200, found.labels[name.lower()], {}

    def _op_get_contents(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, path: str
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        ref = request.args.get("ref", found.default_branch)
        path = path.strip("/")
        if path in found.files:
            return 200, obj.content_file(self.urls, found.full_name, path, found.files[path], ref), {}
        prefix = path + "/"
        entries = sorted(p for p in found.files if p.startswith(prefix))
        if not entries:
            raise GitHubError(404, "Not Found")
        listing = [obj.content_file(self.urls, found.full_name, p, found.files[p], ref) for p in entries]
        for entry in listing:
            entry.pop("content"), entry.pop("encoding")
        return 200, listing, {}

    # --- operations: pull requests and reviews -------------------------------------------------

    def _new_pull(
        self, repo: Repo, title: str, body: str, head: str, base: str, draft: bool, author: str
    ) -> gp.Pull:
        if repo.git_dir is None:
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "code": "invalid", "field": "head"}],
            )
        head_sha, base_sha = gp.branch_sha(repo.git_dir, head), gp.branch_sha(repo.git_dir, base)
        if head_sha is None or base_sha is None:
            field_name = "head" if head_sha is None else "base"
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "code": "invalid", "field": field_name}],
            )
        number = max([*repo.issues, 0]) + 1
        merge_base = gp.git(repo.git_dir, "merge-base", base_sha, head_sha).strip()
        pull = gp.Pull(number, title, body, head, base, draft, author, head_sha, merge_base)
        repo.pulls[number] = pull
        repo.issues[number] = Issue(number, title, body, author, pull_request=True)
        return pull

    def _pull_body(self, repo: Repo, pull: gp.Pull) -> dict[str, Any]:
        assert repo.git_dir is not None
        self._follow_head(repo, pull)
        kind = "Bot" if pull.author == self.bot_login else "User"
        return gp.pull_body(
            self.urls,
            self._repo_body(repo),
            self._user(repo.full_name.split("/")[0]),
            self._user(pull.author, kind=kind),
            pull,
            gp.pull_diff(repo.git_dir, pull),
        )

    def _pull(self, repo: Repo, number: int) -> gp.Pull:
        """The pull request, its head following its branch (pushes after it was opened move it)."""
        if number not in repo.pulls:
            raise GitHubError(404, "Not Found")
        return self._follow_head(repo, repo.pulls[number])

    def _follow_head(self, repo: Repo, pull: gp.Pull) -> gp.Pull:
        if pull.state == "open" and repo.git_dir is not None:
            pull.head_sha = gp.branch_sha(repo.git_dir, pull.head) or pull.head_sha
        return pull

    def _op_list_pulls(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        found = self._need_repo(call, owner, repo)
        state, head = request.args.get("state", "open"), gp.head_filter(request)
        chosen = [
            p
            for p in found.pulls.values()
            if (state == "all" or p.state == state) and (head is None or p.head == head)
        ]
        page, headers = _paginate(request, [self._pull_body(found, p) for p in chosen])
        return 200, page, headers

    def _op_create_pull(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        found = self._need_repo(call, owner, repo)
        title, head, base = (_require_string(body, key) for key in ("title", "head", "base"))
        head = head.split(":", 1)[-1]
        if any(p.head == head and p.state == "open" for p in found.pulls.values()):
            raise GitHubError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {owner}:{head}.",
                    }
                ],
            )
        pull = self._new_pull(
            found, title, body.get("body") or "", head, base, bool(body.get("draft")), self.bot_login
        )
        created = self._pull_body(found, pull)
        return 201, created, {"Location": created["url"]}

    def _op_get_pull(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        return 200, self._pull_body(found, self._pull(found, number)), {}

    def _op_edit_pull(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        """GitHub's "update a pull request": title, body and state (open/closed) as given."""
        found = self._need_repo(call, owner, repo)
        pull = self._pull(found, number)
        fields = body if isinstance(body, dict) else {}
        if "title" in fields:
            pull.title = found.issues[number].title = _require_string(fields, "title")
        if "body" in fields:
            pull.body = found.issues[number].body = fields.get("body") or ""
        if fields.get("state") in ("open", "closed"):
            pull.state = found.issues[number].state = fields["state"]
        return 200, self._pull_body(found, pull), {}

    def _op_pull_files(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        pull = self._pull(found, number)
        assert found.git_dir is not None
        entries = gp.diff_entries(
            self.urls.api, self.urls.web, found.full_name, pull, gp.pull_diff(found.git_dir, pull)
        )
        page, headers = _paginate(request, entries)
        return 200, page, headers

    def _op_list_reviews(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        reviews = [{k: v for k, v in r.items() if k != "comments"} for r in self._pull(found, number).reviews]
        page, headers = _paginate(request, reviews)
        return 200, page, headers

    def _op_create_review(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        pull = self._pull(found, number)
        event = body.get("event") if isinstance(body, dict) else None
        if event not in ("COMMENT", "APPROVE", "REQUEST_CHANGES"):
            raise GitHubError(
                422,
                "Unprocessable Entity",
                errors=[
                    "a pending review cannot be created by an app here; "
                    "send event COMMENT, APPROVE or REQUEST_CHANGES"
                ],
            )
        text = body.get("body") or ""
        if event != "APPROVE" and not text:
            raise GitHubError(422, "Unprocessable Entity", errors=["Body is required for this event"])
        comments = body.get("comments") or []
        return 200, self._submit_review(found, pull, text, event, self.bot_login, comments), {}

    def _op_edit_review(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, number: int, review_id: int
    ) -> tuple:
        """GitHub's "update a review": only its body changes; only its author may change it."""
        found = self._need_repo(call, owner, repo)
        text = _require_string(body, "body")
        review = next((r for r in self._pull(found, number).reviews if r["id"] == review_id), None)
        if review is None:
            raise GitHubError(404, "Not Found")
        if review["user"]["login"] != self.bot_login:
            raise GitHubError(403, "Resource not accessible by integration")
        review["body"] = text
        return 200, {k: v for k, v in review.items() if k != "comments"}, {}


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/app", "get_app"),
    ("GET", "/repos/<owner>/<repo>/installation", "repo_installation"),
    ("POST", "/app/installations/<int:installation_id>/access_tokens", "access_token"),
    ("GET", "/installation/repositories", "installation_repos"),
    ("POST", "/app-manifests/<code>/conversions", "manifest_conversion"),
    ("GET", "/repos/<owner>/<repo>", "get_repo"),
    ("GET", "/repos/<owner>/<repo>/issues/<int:number>", "get_issue"),
    ("GET", "/repos/<owner>/<repo>/issues/<int:number>/comments", "list_comments"),
    ("POST", "/repos/<owner>/<repo>/issues/<int:number>/comments", "create_comment"),
    ("GET", "/repos/<owner>/<repo>/issues/comments/<int:comment_id>", "get_comment"),
    ("PATCH", "/repos/<owner>/<repo>/issues/comments/<int:comment_id>", "edit_comment"),
    ("POST", "/repos/<owner>/<repo>/issues/comments/<int:comment_id>/reactions", "comment_reaction"),
    ("POST", "/repos/<owner>/<repo>/issues/<int:number>/reactions", "issue_reaction"),
    ("GET", "/repos/<owner>/<repo>/issues/<int:number>/labels", "issue_labels"),
    ("GET", "/repos/<owner>/<repo>/collaborators/<username>/permission", "collaborator_permission"),
    ("GET", "/repos/<owner>/<repo>/labels", "list_labels"),
    ("POST", "/repos/<owner>/<repo>/labels", "create_label"),
    ("GET", "/repos/<owner>/<repo>/labels/<name>", "get_label"),
    ("GET", "/repos/<owner>/<repo>/contents/<path:path>", "get_contents"),
)
