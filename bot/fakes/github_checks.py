"""Check runs (the Checks API) for the fake GitHub.

As on GitHub: a check run needs a `name` and a `head_sha` the repository has (422 otherwise); it is
`queued` unless told otherwise; a `conclusion` makes it `completed`, and `completed` needs one; an
`output` needs a `title` and a `summary`. `GET /commits/{ref}/check-runs` lists, by default, the
latest run of each name (`filter=latest`). Every status a run went through is kept
(`check_run_statuses`), so tests can assert the lifecycle queued → in_progress → completed.

A mixin of `FakeGitHub`, like `github_ops.Operations`.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp
from bot.fakes.github_state import Call, GitHubError, Repo, _paginate, _require_string

CHECK_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/repos/<owner>/<repo>/check-runs", "create_check_run"),
    ("GET", "/repos/<owner>/<repo>/check-runs/<int:check_run_id>", "get_check_run"),
    ("PATCH", "/repos/<owner>/<repo>/check-runs/<int:check_run_id>", "update_check_run"),
    ("GET", "/repos/<owner>/<repo>/commits/<path:ref>/check-runs", "list_check_runs"),
)

_FIELDS = ("name", "details_url", "external_id", "started_at", "completed_at", "status", "conclusion")


def _invalid(field: str, code: str = "invalid") -> GitHubError:
    return GitHubError(
        422, "Validation Failed", errors=[{"resource": "CheckRun", "code": code, "field": field}]
    )


class CheckOperations:
    """Check run operations and the test-side helpers that read them."""

    # --- reading (tests) -------------------------------------------------------------------------

    def check_runs(self, full_name: str, sha: str | None = None) -> list[dict[str, Any]]:
        """Every check run of a repository (of one head sha if given) as the API shows it, oldest first."""
        with self._lock:
            repo = self._repo(full_name)
            return [
                self._check_run_body(repo, run)
                for run in self._repo_check_runs(repo)
                if sha is None or run["head_sha"] == sha
            ]

    def check_run_statuses(self, check_run_id: int) -> list[str]:
        """The statuses a check run went through, in order (repeats of the same status folded)."""
        with self._lock:
            return list(self._check_runs[check_run_id]["statuses"])

    # --- operations ------------------------------------------------------------------------------

    def _op_create_check_run(self, request: Request, call: Call, body: Any, owner: str, repo: str) -> tuple:
        found = self._need_repo(call, owner, repo)
        name, head_sha = _require_string(body, "name"), _require_string(body, "head_sha")
        if self._commit_sha(found, head_sha) is None:
            raise GitHubError(422, f"No commit found for SHA: {head_sha}")
        cid = next(self._ids)
        stamp = obj.now()
        run: dict[str, Any] = {
            "id": cid,
            "repo": found.full_name,
            "name": name,
            "head_sha": head_sha,
            "status": "queued",
            "conclusion": None,
            "started_at": stamp,
            "completed_at": None,
            "external_id": "",
            "details_url": None,
            "output": None,
            "statuses": [],
        }
        self._apply_check_run(run, {k: v for k, v in body.items() if k not in ("name", "head_sha")})
        run["name"] = name
        self._check_runs[cid] = run
        return 201, self._check_run_body(found, run), {}

    def _op_get_check_run(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, check_run_id: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        return 200, self._check_run_body(found, self._find_check_run(found, check_run_id)), {}

    def _op_update_check_run(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, check_run_id: int
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        run = self._find_check_run(found, check_run_id)
        self._apply_check_run(run, body if isinstance(body, dict) else {})
        return 200, self._check_run_body(found, run), {}

    def _op_list_check_runs(
        self, request: Request, call: Call, body: Any, owner: str, repo: str, ref: str
    ) -> tuple:
        found = self._need_repo(call, owner, repo)
        sha = self._commit_sha(found, ref)
        if sha is None:
            raise GitHubError(422, f"No commit found for SHA: {ref}")
        runs = [r for r in self._repo_check_runs(found) if r["head_sha"] == sha]
        if name := request.args.get("check_name"):
            runs = [r for r in runs if r["name"] == name]
        if status := request.args.get("status"):
            runs = [r for r in runs if r["status"] == status]
        if request.args.get("filter", "latest") == "latest":
            latest = {r["name"]: r for r in runs}  # oldest first, so the last of each name wins
            runs = sorted(latest.values(), key=lambda r: r["id"])
        page, headers = _paginate(request, [self._check_run_body(found, r) for r in runs])
        return 200, {"total_count": len(runs), "check_runs": page}, headers

    # --- state helpers ---------------------------------------------------------------------------

    def _apply_check_run(self, run: dict[str, Any], changes: dict[str, Any]) -> None:
        """Apply a create's or an update's fields with GitHub's rules, keeping the status history."""
        updated = {**run, **{k: changes[k] for k in _FIELDS if k in changes}}
        if "output" in changes:
            output = changes["output"]
            if not isinstance(output, dict) or not output.get("title") or "summary" not in output:
                raise _invalid("output", "missing_field")
            updated["output"] = output
        if changes.get("conclusion"):
            updated["status"] = "completed"
        elif updated["status"] != "completed":  # a run set going again drops its old outcome
            updated["conclusion"] = updated["completed_at"] = None
        if updated["status"] == "completed":
            if not updated["conclusion"]:
                raise _invalid("conclusion", "missing_field")
            updated["completed_at"] = updated["completed_at"] or obj.now()
        if not updated["statuses"] or updated["statuses"][-1] != updated["status"]:
            updated["statuses"] = [*updated["statuses"], updated["status"]]
        run.update(updated)

    def _commit_sha(self, repo: Repo, ref: str) -> str | None:
        """The commit a ref names, from the repository's git (any ref when the fake has no git)."""
        if repo.git_dir is None:
            return ref
        try:
            return gp.git(repo.git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except LookupError:
            return None

    def _find_check_run(self, repo: Repo, check_run_id: int) -> dict[str, Any]:
        run = self._check_runs.get(check_run_id)
        if run is None or run["repo"] != repo.full_name:
            raise GitHubError(404, "Not Found")
        return run

    def _repo_check_runs(self, repo: Repo) -> list[dict[str, Any]]:
        return [r for r in self._check_runs.values() if r["repo"] == repo.full_name]

    def _check_run_body(self, repo: Repo, run: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.urls.api}/repos/{repo.full_name}/check-runs/{run['id']}"
        app = self._app_body()
        output = run["output"] or {}
        suite = int(run["head_sha"][:7], 16) if _is_hex(run["head_sha"][:7]) else repo.rid
        return {
            "id": run["id"],
            "node_id": obj.node_id("CR", run["id"]),
            "head_sha": run["head_sha"],
            "external_id": run["external_id"],
            "url": api,
            "html_url": f"{self.urls.web}/{repo.full_name}/runs/{run['id']}",
            "details_url": run["details_url"] or app["html_url"],
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": 0,
                "annotations_url": f"{api}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": suite},
            "app": app,
            "pull_requests": self._pulls_at(repo, run["head_sha"]),
        }

    def _pulls_at(self, repo: Repo, sha: str) -> list[dict[str, Any]]:
        """`pull-request-minimal` objects of the open pull requests whose head is `sha`."""
        repo_ref = {
            "id": repo.rid,
            "url": f"{self.urls.api}/repos/{repo.full_name}",
            "name": repo.full_name.split("/")[1],
        }
        found = []
        for pull in repo.pulls.values():
            if pull.state != "open" or self._follow_head(repo, pull).head_sha != sha:
                continue
            found.append(
                {
                    "id": repo.rid * 100_000 + pull.number,
                    "number": pull.number,
                    "url": f"{self.urls.api}/repos/{repo.full_name}/pulls/{pull.number}",
                    "head": {"ref": pull.head, "sha": pull.head_sha, "repo": repo_ref},
                    "base": {"ref": pull.base, "sha": pull.base_sha, "repo": repo_ref},
                }
            )
        return found


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text.lower())
