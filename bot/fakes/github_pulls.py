"""Pull requests and reviews for the fake GitHub, backed by a real bare git repository.

A repository added with `git_dir` (the bare repo the bot pushes to through a `file://` GITHUB_GIT_URL)
answers like GitHub does: a pull request needs its head branch to exist, its files and diff come from
git, and a review comment must sit on a line of the diff, a multi-line one on lines of one hunk (GitHub
answers 422 otherwise).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unidiff import PatchSet
from werkzeug.wrappers import Request

from bot.fakes import github_objects as obj

PULL_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/repos/<owner>/<repo>/pulls", "list_pulls"),
    ("POST", "/repos/<owner>/<repo>/pulls", "create_pull"),
    ("GET", "/repos/<owner>/<repo>/pulls/<int:number>", "get_pull"),
    ("PATCH", "/repos/<owner>/<repo>/pulls/<int:number>", "edit_pull"),
    ("GET", "/repos/<owner>/<repo>/pulls/<int:number>/files", "pull_files"),
    ("GET", "/repos/<owner>/<repo>/pulls/<int:number>/reviews", "list_reviews"),
    ("POST", "/repos/<owner>/<repo>/pulls/<int:number>/reviews", "create_review"),
    ("PUT", "/repos/<owner>/<repo>/pulls/<int:number>/reviews/<int:review_id>", "edit_review"),
)


@dataclass
class Pull:
    number: int
    title: str
    body: str
    head: str
    base: str
    draft: bool
    author: str
    head_sha: str
    base_sha: str
    state: str = "open"
    reviews: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=obj.now)


def git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LookupError(done.stderr.strip())
    return done.stdout


def commit_files(git_dir: Path, branch: str, files: dict[str, bytes]) -> None:
    """Put `files` on `branch` of the bare repository in one commit, so a clone (or the bot's mirror) sees
    what the contents API serves, as on GitHub. Nothing is committed when they are already there."""
    parent = branch_sha(git_dir, branch)
    if parent is None:
        return
    index = git_dir / "fake-github.index"
    who = {f"GIT_{role}_{part}": value for role in ("AUTHOR", "COMMITTER")
           for part, value in (("NAME", "fake"), ("EMAIL", "fake@example.com"))}  # fmt: skip
    env = {"GIT_INDEX_FILE": str(index), "PATH": "/usr/bin:/bin", **who}

    def run(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", "--git-dir", str(git_dir), *args], input=data, env=env, capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    try:
        run("read-tree", parent)
        for path, content in files.items():
            sha = run("hash-object", "-w", "--stdin", data=content)
            run("update-index", "--add", "--cacheinfo", f"100644,{sha},{path}")
        tree = run("write-tree")
        if tree != run("rev-parse", f"{parent}^{{tree}}"):
            commit = run("commit-tree", tree, "-p", parent, "-m", "Files added through the fake GitHub")
            run("update-ref", f"refs/heads/{branch}", commit, parent)
    finally:
        index.unlink(missing_ok=True)


def branch_sha(git_dir: Path, branch: str) -> str | None:
    try:
        return git(git_dir, "rev-parse", "--verify", f"refs/heads/{branch}").strip()
    except LookupError:
        return None


def pull_diff(git_dir: Path, pull: Pull) -> str:
    """The pull request's diff as GitHub shows it: head against the merge base with the base branch."""
    return git(git_dir, "diff", "--no-color", "--no-renames", f"{pull.base_sha}...{pull.head_sha}")


def diff_entries(api: str, web: str, full_name: str, pull: Pull, diff_text: str) -> list[dict[str, Any]]:
    """`diff-entry` objects for GET /pulls/{n}/files."""
    entries = []
    for patched in PatchSet(diff_text):
        status = "added" if patched.is_added_file else "removed" if patched.is_removed_file else "modified"
        name = patched.path
        patch = "".join(str(hunk) for hunk in patched)
        entries.append(
            {
                "sha": pull.head_sha,
                "filename": name,
                "status": status,
                "additions": patched.added,
                "deletions": patched.removed,
                "changes": patched.added + patched.removed,
                "blob_url": f"{web}/{full_name}/blob/{pull.head_sha}/{name}",
                "raw_url": f"{web}/{full_name}/raw/{pull.head_sha}/{name}",
                "contents_url": f"{api}/repos/{full_name}/contents/{name}?ref={pull.head_sha}",
                "patch": patch,
            }
        )
    return entries


#: GitHub's answers (422) for a multi-line review comment it cannot place.
START_NOT_BEFORE_LINE = "Pull request review thread start line must precede the end line."
START_SIDE_DIFFERS = "Pull request review thread start side must be the same as the side."
NOT_ONE_HUNK = "Pull request review thread start line must be part of the same hunk as the line."


def hunk_lines(diff_text: str) -> dict[tuple[str, str], list[set[int]]]:
    """(path, side) → the line numbers each hunk shows on that side, one set per hunk."""
    lines: dict[tuple[str, str], list[set[int]]] = {}
    for patched in PatchSet(diff_text):
        right = lines.setdefault((patched.path, "RIGHT"), [])
        left = lines.setdefault((patched.path, "LEFT"), [])
        for hunk in patched:
            right.append({row.target_line_no for row in hunk if row.target_line_no is not None})
            left.append(
                {row.source_line_no for row in hunk if row.source_line_no is not None and not row.is_added}
            )
    return lines


def commentable_lines(diff_text: str) -> dict[tuple[str, str], set[int]]:
    """(path, side) → line numbers a review comment may be anchored on (lines shown in the diff)."""
    return {key: set().union(*hunks) for key, hunks in hunk_lines(diff_text).items()}


def unanchored(diff_text: str, comments: list[dict[str, Any]]) -> list[str]:
    """Why each review comment cannot be placed, GitHub-style; empty when all can."""
    hunks = hunk_lines(diff_text)
    allowed = {key: set().union(*sets) for key, sets in hunks.items()}
    problems = []
    for comment in comments:
        side = comment.get("side", "RIGHT")
        line = comment.get("line")
        where = (comment.get("path"), side)
        if line is None:
            problems.append(f"{comment.get('path')}: `line` is required (positions are not supported here)")
        elif line not in allowed.get(where, set()):
            problems.append("Pull request review thread line must be part of the diff")
        elif comment.get("start_line") is not None and (
            problem := range_problem(comment, hunks.get(where, []))
        ):
            problems.append(problem)
    return problems


def range_problem(comment: dict[str, Any], hunks: list[set[int]]) -> str | None:
    """Why a multi-line comment (`start_line` … `line`) cannot be placed: as on GitHub, the start comes
    before the line, on the same side, and every line between them is in one hunk of that side."""
    start, line, side = comment["start_line"], comment["line"], comment.get("side", "RIGHT")
    if not isinstance(start, int) or start >= line:
        return START_NOT_BEFORE_LINE
    if comment.get("start_side", side) != side:
        return START_SIDE_DIFFERS
    if not any(all(n in hunk for n in range(start, line + 1)) for hunk in hunks):
        return NOT_ONE_HUNK
    return None


def pull_body(
    urls: obj.Urls, repo_body: dict, user: dict, author: dict, pull: Pull, diff_text: str
) -> dict[str, Any]:
    """A full `pull-request` object."""
    full_name = repo_body["full_name"]
    api = f"{urls.api}/repos/{full_name}/pulls/{pull.number}"
    issue_api = f"{urls.api}/repos/{full_name}/issues/{pull.number}"
    html = f"{urls.web}/{full_name}/pull/{pull.number}"
    patches = PatchSet(diff_text)

    def side(ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{full_name.split('/')[0]}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user,
            "repo": repo_body,
        }

    links = {
        "self": api,
        "html": html,
        "issue": issue_api,
        "comments": f"{issue_api}/comments",
        "review_comments": f"{api}/comments",
        "review_comment": f"{urls.api}/repos/{full_name}/pulls/comments{{/number}}",
        "commits": f"{api}/commits",
        "statuses": f"{urls.api}/repos/{full_name}/statuses/{pull.head_sha}",
    }
    pid = repo_body["id"] * 100_000 + pull.number
    return {
        "id": pid,
        "node_id": obj.node_id("PR", pid),
        "number": pull.number,
        "url": api,
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_api,
        "commits_url": links["commits"],
        "review_comments_url": links["review_comments"],
        "review_comment_url": links["review_comment"],
        "comments_url": links["comments"],
        "statuses_url": links["statuses"],
        "state": pull.state,
        "locked": False,
        "title": pull.title,
        "body": pull.body,
        "user": author,
        "labels": [],
        "milestone": None,
        "assignee": None,
        "assignees": [],
        "created_at": pull.created_at,
        "updated_at": pull.created_at,
        "closed_at": None,
        "merged_at": None,
        "merge_commit_sha": None,
        "head": side(pull.head, pull.head_sha),
        "base": side(pull.base, pull.base_sha),
        "_links": {k: {"href": v} for k, v in links.items()},
        "author_association": "NONE",
        "auto_merge": None,
        "draft": pull.draft,
        "merged": False,
        "mergeable": True,
        "mergeable_state": "clean",
        "merged_by": None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": sum(p.added for p in patches),
        "deletions": sum(p.removed for p in patches),
        "changed_files": len(patches),
    }


def review_body(
    urls: obj.Urls, full_name: str, pull: Pull, rid: int, reviewer: dict, body: str, event: str
) -> dict[str, Any]:
    html = f"{urls.web}/{full_name}/pull/{pull.number}#pullrequestreview-{rid}"
    api = f"{urls.api}/repos/{full_name}/pulls/{pull.number}"
    state = {"COMMENT": "COMMENTED", "APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}[event]
    return {
        "id": rid,
        "node_id": obj.node_id("PRR", rid),
        "user": reviewer,
        "body": body,
        "state": state,
        "commit_id": pull.head_sha,
        "html_url": html,
        "pull_request_url": api,
        "author_association": "NONE",
        "submitted_at": obj.now(),
        "_links": {"html": {"href": html}, "pull_request": {"href": api}},
    }


def head_filter(request: Request) -> str | None:
    """`head=owner:branch` (GitHub's filter form) → branch."""
    head = request.args.get("head")
    return head.split(":", 1)[-1] if head else None
