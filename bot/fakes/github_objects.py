"""JSON bodies shaped like GitHub's REST answers, for the fake GitHub server.

Every builder fills all the fields GitHub's OpenAPI description marks as required, so the fake's own
answers validate against it (the tests check that) and PyGithub parses them as it parses GitHub's.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

ISO = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    return datetime.now(UTC).strftime(ISO)


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


class Urls:
    """Where the fake lives: its API base (with a GHES `/api/v3` prefix or not) and its web base."""

    def __init__(self, api: str, web: str) -> None:
        self.api = api.rstrip("/")
        self.web = web.rstrip("/")


def user(urls: Urls, login: str, uid: int, *, kind: str = "User") -> dict[str, Any]:
    """A `simple-user`."""
    api = f"{urls.api}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": node_id("U", uid),
        "avatar_url": f"{urls.web}/avatars/u/{uid}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.web}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def app(urls: Urls, app_id: int, slug: str, owner: dict[str, Any]) -> dict[str, Any]:
    """An `integration` (GET /app, `performed_via_github_app`)."""
    stamp = "2026-01-01T00:00:00Z"
    return {
        "id": app_id,
        "slug": slug,
        "node_id": node_id("A", app_id),
        "client_id": f"Iv1.{hashlib.sha1(slug.encode()).hexdigest()[:16]}",
        "owner": owner,
        "name": slug.replace("-", " ").title(),
        "description": "Archon Bot (fake GitHub)",
        "external_url": f"{urls.web}/apps/{slug}",
        "html_url": f"{urls.web}/apps/{slug}",
        "created_at": stamp,
        "updated_at": stamp,
        "permissions": {
            "issues": "write",
            "pull_requests": "write",
            "contents": "write",
            "checks": "write",
            "metadata": "read",
        },
        "events": [
            "issues",
            "issue_comment",
            "pull_request",
            "pull_request_review",
            "pull_request_review_comment",
        ],
    }


def installation(urls: Urls, iid: int, app_body: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    stamp = "2026-01-01T00:00:00Z"
    return {
        "id": iid,
        "account": account,
        "repository_selection": "selected",
        "access_tokens_url": f"{urls.api}/app/installations/{iid}/access_tokens",
        "repositories_url": f"{urls.api}/installation/repositories",
        "html_url": f"{urls.web}/settings/installations/{iid}",
        "app_id": app_body["id"],
        "app_slug": app_body["slug"],
        "client_id": app_body["client_id"],
        "target_id": account["id"],
        "target_type": account["type"],
        "permissions": app_body["permissions"],
        "events": app_body["events"],
        "created_at": stamp,
        "updated_at": stamp,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


_REPO_LINKS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def repository(
    urls: Urls, rid: int, full_name: str, owner: dict[str, Any], *, default_branch: str, clone_url: str
) -> dict[str, Any]:
    """A `full-repository` (also valid as a `repository`)."""
    api = f"{urls.api}/repos/{full_name}"
    stamp = "2026-01-01T00:00:00Z"
    body: dict[str, Any] = {key: api + suffix for key, suffix in _REPO_LINKS.items()}
    body.update(
        id=rid,
        node_id=node_id("R", rid),
        name=full_name.split("/", 1)[1],
        full_name=full_name,
        owner=owner,
        private=False,
        visibility="public",
        html_url=f"{urls.web}/{full_name}",
        description="A repository on the fake GitHub",
        fork=False,
        url=api,
        clone_url=clone_url,
        git_url=clone_url,
        ssh_url=clone_url,
        svn_url=f"{urls.web}/{full_name}",
        mirror_url=None,
        homepage=None,
        language="Python",
        default_branch=default_branch,
        forks=0,
        forks_count=0,
        stargazers_count=0,
        watchers=0,
        watchers_count=0,
        open_issues=0,
        open_issues_count=0,
        size=1,
        has_issues=True,
        has_projects=False,
        has_wiki=False,
        has_pages=False,
        has_downloads=False,
        has_discussions=False,
        archived=False,
        disabled=False,
        license=None,
        pushed_at=stamp,
        created_at=stamp,
        updated_at=stamp,
        network_count=0,
        subscribers_count=0,
        permissions={"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
    )
    return body


def label(urls: Urls, full_name: str, lid: int, name: str, color: str, description: str | None) -> dict:
    return {
        "id": lid,
        "node_id": node_id("L", lid),
        "url": f"{urls.api}/repos/{full_name}/labels/{name}",
        "name": name,
        "color": color,
        "description": description,
        "default": False,
    }


def reaction_rollup(url: str, reactions: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {key: 0 for key in ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")}
    for item in reactions:
        counts[item["content"]] += 1
    return {"url": f"{url}/reactions", "total_count": len(reactions), **counts}


def content_file(urls: Urls, full_name: str, path: str, text: bytes, ref: str) -> dict[str, Any]:
    """A `content-file`: base64 with a newline every 60 characters, as GitHub sends it."""
    sha = hashlib.sha1(b"blob %d\0" % len(text) + text).hexdigest()
    encoded = base64.b64encode(text).decode()
    wrapped = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
    api = f"{urls.api}/repos/{full_name}/contents/{path}?ref={ref}"
    html = f"{urls.web}/{full_name}/blob/{ref}/{path}"
    git = f"{urls.api}/repos/{full_name}/git/blobs/{sha}"
    return {
        "type": "file",
        "encoding": "base64",
        "size": len(text),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "content": wrapped,
        "sha": sha,
        "url": api,
        "git_url": git,
        "html_url": html,
        "download_url": f"{urls.web}/raw/{full_name}/{ref}/{path}",
        "_links": {"self": api, "git": git, "html": html},
    }


def error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(status),
        **extra,
    }
