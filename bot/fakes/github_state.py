"""The fake GitHub's state and the small helpers its operations share (GitHub's error shape,
pagination, rate-limit headers)."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp

#: Role name → the `permission` GitHub reports for it (maintain and triage only show in `role_name`).
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    path: str  # without the GHES prefix
    query: dict[str, str]
    body: Any
    status: int
    auth: str  # "app", "installation:<id>", "none" or "invalid"
    at: float = field(default_factory=time.monotonic)  # when it arrived (tests measure waits with it)


@dataclass
class Issue:
    number: int
    title: str
    body: str
    author: str
    labels: list[str] = field(default_factory=list)
    pull_request: bool = False
    state: str = "open"
    reactions: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=obj.now)


@dataclass
class Repo:
    full_name: str
    rid: int
    installation: int
    default_branch: str
    clone_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    collaborators: dict[str, str] = field(default_factory=dict)  # login → role name
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case name → label
    issues: dict[int, Issue] = field(default_factory=dict)
    git_dir: Path | None = None  # the bare repository pushes land in (pull requests read it)
    pulls: dict[int, gp.Pull] = field(default_factory=dict)


#: What GitHub says when a secondary rate limit is hit (with `retry-after`, or nothing to go by).
SECONDARY_RATE_LIMITED = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
INJECTED = "Injected failure (fake GitHub)"


@dataclass
class _Failure:
    """A failure `fail_next` injects: before the operation, or after it (the answer is lost)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    headers: dict[str, str]
    after: bool = False
    body: re.Pattern[str] | None = None  # searched in the request's JSON body; None: any body
    message: str = INJECTED

    def matches(self, method: str, path: str, body: Any) -> bool:
        if not self.remaining or self.method != method or not self.pattern.fullmatch(path):
            return False
        return self.body is None or bool(self.body.search(json.dumps(body, ensure_ascii=False)))

    def error(self) -> GitHubError:
        return GitHubError(self.status, self.message, headers=self.headers)


class GitHubError(Exception):
    """Answer with GitHub's error shape."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
        self.headers = headers or {}


def _json_body(request: Request) -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None


def _require_string(body: Any, name: str) -> str:
    if not isinstance(body, dict) or not isinstance(body.get(name), str):
        raise GitHubError(
            422, "Validation Failed", errors=[{"field": name, "code": "missing_field", "resource": "Request"}]
        )
    return body[name]


def _paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """GitHub's page/per_page with a `Link` header, which PyGithub follows."""
    per_page = max(1, min(100, int(request.args.get("per_page", 30))))
    page = max(1, int(request.args.get("page", 1)))
    last = max(1, -(-len(items) // per_page))
    links = []
    base = request.base_url
    for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
        if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
            query = urlencode({**request.args, "per_page": per_page, "page": number})
            links.append(f'<{base}?{query}>; rel="{rel}"')
    headers = {"Link": ", ".join(links)} if links else {}
    return items[(page - 1) * per_page : page * per_page], headers


def _rate_headers() -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "4999",
        "X-RateLimit-Used": "1",
        "X-RateLimit-Reset": str(int(time.time()) + 3600),
        "X-RateLimit-Resource": "core",
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
    }


def _association(repo: Repo, login: str) -> str:
    if login == repo.full_name.split("/", 1)[0]:
        return "OWNER"
    return "COLLABORATOR" if login in repo.collaborators else "NONE"


def _permission_flags(role: str) -> dict[str, bool]:
    order = ["read", "triage", "write", "maintain", "admin"]
    rank = order.index(role)
    return {"pull": True, "triage": rank >= 1, "push": rank >= 2, "maintain": rank >= 3, "admin": rank >= 4}
