"""A stateful fake of GitHub's REST API: a real HTTP server on 127.0.0.1 that PyGithub talks to.

Why a server and not mocks: the web process, the worker processes and the tests must all see the same
GitHub, and PyGithub must run unmodified (App JWT, installation tokens, pagination, retries) against
its `base_url`. The fake

- checks App authentication for real: the JWT is verified with the App's public key (RS256, `iss`,
  lifetime at most ten minutes) and installation tokens only open their installation's repositories;
- keeps state (repositories, issues, comments, reactions, labels, files, collaborators, pull requests,
  reviews, review comments and check runs);
- records every call (`calls`) and, given GitHub's OpenAPI description, validates each request and its
  own answer against it, collecting `violations` (an undocumented operation is one too);
- can be told to fail (`fail_next`) before performing a call or after it (a lost answer), with the
  headers of a secondary rate limit if asked, so retries and error reporting are exercised;
- serves under a prefix (`/api/v3`) to stand in for GitHub Enterprise Server.

The demo (`archon-bot demo`) uses it too, so it lives in the package, not under `tests/`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp
from bot.fakes.github_checks import CHECK_ROUTES, CheckOperations
from bot.fakes.github_ops import ROUTES, Operations
from bot.fakes.github_state import (
    INJECTED,
    ROLE_TO_PERMISSION,
    Call,
    GitHubError,
    Issue,
    Repo,
    _association,
    _Failure,
    _json_body,
    _rate_headers,
)
from bot.fakes.github_threads import THREAD_ROUTES, ThreadOperations

MAX_JWT_LIFETIME = 600  # GitHub refuses App JWTs that live longer than ten minutes.


class FakeGitHub(Operations, ThreadOperations, CheckOperations):
    """Start with `with FakeGitHub(app_id, public_key_pem) as gh:`; point PyGithub at `gh.api_url`."""

    def __init__(
        self,
        app_id: int,
        public_key: str,
        *,
        slug: str = "archon-bot",
        prefix: str = "",
        openapi: Path | None = None,
    ) -> None:
        self.app_id, self.public_key, self.slug = app_id, public_key, slug
        self.prefix = prefix.rstrip("/")
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self._openapi_path = openapi
        self._openapi: Any = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1000)
        self._users: dict[str, dict[str, Any]] = {}
        self._repos: dict[str, Repo] = {}
        self._installations: dict[int, str] = {}  # id → account login
        self._tokens: dict[str, tuple[int, float]] = {}  # token → (installation, expiry)
        self._comments: dict[int, dict[str, Any]] = {}  # id → {repo, issue, body, author, ...}
        self._review_comments: dict[int, dict[str, Any]] = {}  # id → {repo, number, path, line, ...}
        self._check_runs: dict[int, dict[str, Any]] = {}  # id → {repo, name, head_sha, status, ...}
        self._manifest_codes: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.urls = obj.Urls("http://127.0.0.1", "http://127.0.0.1")
        routes = (*ROUTES, *gp.PULL_ROUTES, *THREAD_ROUTES, *CHECK_ROUTES)
        self._routes = Map([Rule(self.prefix + path, endpoint=name, methods=[m]) for m, path, name in routes])

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        port = self._server.server_port
        self.urls = obj.Urls(f"http://127.0.0.1:{port}{self.prefix}", f"http://127.0.0.1:{port}")
        if self._openapi_path is not None:
            self._openapi = _load_openapi(self._openapi_path, self.api_url)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-github", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """`GITHUB_API_URL` for the bot."""
        return self.urls.api

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"

    def reset(self) -> None:
        """Forget all state, calls and violations (one server shared by many tests)."""
        with self._lock:
            for store in (
                self._users,
                self._repos,
                self._installations,
                self._tokens,
                self._comments,
                self._review_comments,
                self._check_runs,
                self._manifest_codes,
            ):
                store.clear()
            self.calls.clear()
            self.violations.clear()
            self._failures.clear()

    # --- seeding state (tests and the demo) --------------------------------------------------

    def add_installation(self, installation_id: int, account: str) -> None:
        with self._lock:
            self._user(account, kind="Organization")
            self._installations[installation_id] = account

    def add_repo(
        self,
        full_name: str,
        *,
        installation: int,
        files: dict[str, str | bytes] | None = None,
        collaborators: dict[str, str] | None = None,
        default_branch: str = "main",
        clone_url: str | None = None,
        git_dir: Path | None = None,
    ) -> Repo:
        """A repository the installation can see. `collaborators` maps login → role name."""
        with self._lock:
            if installation not in self._installations:
                self.add_installation(installation, full_name.split("/", 1)[0])
            repo = Repo(
                full_name=full_name,
                rid=next(self._ids),
                installation=installation,
                default_branch=default_branch,
                clone_url=clone_url or f"{self.urls.web}/{full_name}.git",
                git_dir=git_dir,
            )
            for path, text in (files or {}).items():
                repo.files[path] = text.encode() if isinstance(text, str) else text
            if git_dir is not None and repo.files:
                gp.commit_files(git_dir, default_branch, repo.files)
            for login, role in (collaborators or {}).items():
                self.set_collaborator(full_name, login, role)
                repo.collaborators[login] = role
            self._repos[full_name.lower()] = repo
            return repo

    def set_collaborator(self, full_name: str, login: str, role: str) -> None:
        if role not in ROLE_TO_PERMISSION:
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            self._user(login)
            if full_name.lower() in self._repos:
                self._repos[full_name.lower()].collaborators[login] = role

    def add_issue(
        self,
        full_name: str,
        number: int,
        *,
        title: str = "An issue",
        body: str = "",
        author: str = "octocat",
        labels: tuple[str, ...] = (),
        pull_request: bool = False,
    ) -> Issue:
        with self._lock:
            self._user(author)
            issue = Issue(number, title, body, author, list(labels), pull_request)
            self._repo(full_name).issues[number] = issue
            return issue

    def add_label(self, full_name: str, name: str, color: str = "ededed", description: str = "") -> None:
        with self._lock:
            repo = self._repo(full_name)
            repo.labels[name.lower()] = obj.label(
                self.urls, full_name, next(self._ids), name, color, description
            )

    def add_comment(
        self,
        full_name: str,
        issue: int,
        body: str,
        *,
        author: str,
        comment_id: int | None = None,
        bot: bool = False,
    ) -> int:
        """A comment by someone else (the bot's own comments arrive through the API)."""
        with self._changed:
            self._user(author, kind="Bot" if bot else "User")
            repo = self._repo(full_name)
            created = self._create_comment(repo, issue, body, author, bot=bot, cid=comment_id)
            self._changed.notify_all()
            return created["id"]

    def delete_comment(self, comment_id: int) -> None:
        with self._changed:
            self._comments.pop(comment_id)
            self._changed.notify_all()

    def add_manifest_code(self, code: str, conversion: dict[str, Any]) -> None:
        """What `POST /app-manifests/{code}/conversions` answers for this code (once)."""
        self._manifest_codes[code] = conversion

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 502,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        after: bool = False,
        body: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` matching requests get `status` (matched against the unprefixed path).

        `after=True` performs the request first and then answers the error, as when GitHub did the work
        but the answer was lost (a 502 from a proxy, a dropped connection): a client that simply posts
        again creates a duplicate. `body` is a regex the request's JSON body must contain (to fail, say,
        only the status edit that says "Done"); `headers` go on the error answer (`retry-after` for a
        secondary rate limit, with `message=SECONDARY_RATE_LIMITED`).
        """
        failure = _Failure(
            method.upper(),
            re.compile(path_regex),
            status,
            times,
            headers or {},
            after=after,
            body=re.compile(body) if body is not None else None,
            message=message or INJECTED,
        )
        with self._lock:
            self._failures.append(failure)

    # --- reading state -----------------------------------------------------------------------

    def comments(self, full_name: str, issue: int) -> list[dict[str, Any]]:
        """Comments on an issue as the API shows them, oldest first."""
        with self._lock:
            repo = self._repo(full_name)
            return [self._comment_body(c) for c in self._issue_comments(repo, issue)]

    def reactions(self, full_name: str, issue: int, comment_id: int | None = None) -> list[str]:
        with self._lock:
            if comment_id is None:
                return [r["content"] for r in self._issue(self._repo(full_name), issue).reactions]
            return [r["content"] for r in self._comments[comment_id]["reactions"]]

    def labels(self, full_name: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {label["name"]: dict(label) for label in self._repo(full_name).labels.values()}

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        """Pull requests as the API shows them, oldest first."""
        with self._lock:
            repo = self._repo(full_name)
            return [self._pull_body(repo, pull) for pull in repo.pulls.values()]

    def reviews(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Reviews on a pull request, each with the inline `comments` it was posted with."""
        with self._lock:
            return [dict(r) for r in self._repo(full_name).pulls[number].reviews]

    def add_pull(
        self,
        full_name: str,
        *,
        head: str,
        base: str = "main",
        title: str = "A change",
        body: str = "",
        author: str = "octocat",
    ) -> int:
        """A pull request someone opened (its head branch must exist in `git_dir`)."""
        with self._changed:
            self._user(author)
            pull = self._new_pull(self._repo(full_name), title, body, head, base, False, author)
            self._changed.notify_all()
            return pull.number

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Block until `predicate()` is truthy (re-checked on every state change); return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake GitHub: condition not met within {timeout}s")
                self._changed.wait(min(remaining, 0.2))
            return result

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    # --- WSGI ----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        request = Request(environ)
        response = self._handle(request)
        if self._openapi is not None:
            self._validate(request, response)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        """Answer `request` and record its call. A call that changed state is recorded in the same
        critical section as the change, so a test that waited for the change counts its call too."""
        path = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else request.path
        call = Call(request.method, path, dict(request.args), None, 0, "none")
        recorded = False
        try:
            body = call.body = _json_body(request)
            call.auth = self._authenticate(request)
            failure = self._take_failure(request.method, path, body)
            if failure is not None and not failure.after:
                raise failure.error()
            endpoint, args = self._routes.bind_to_environ(request.environ).match()
            with self._changed:
                status, payload, headers = getattr(self, f"_op_{endpoint}")(request, call, body, **args)
                if failure is None:
                    call.status, recorded = status, True
                    self.calls.append(call)
                self._changed.notify_all()
            if failure is not None:
                raise failure.error()  # performed, but the answer is lost
        except GitHubError as error:
            status, payload = error.status, obj.error(error.status, error.message, **error.extra)
            headers = error.headers
        except NotFound:
            status, payload, headers = 404, obj.error(404, "Not Found"), {}
        except HTTPException as error:
            status, payload, headers = error.code or 400, obj.error(error.code or 400, error.name), {}
        if not recorded:
            with self._changed:
                call.status = status
                self.calls.append(call)
                self._changed.notify_all()
        text = "" if payload is None else json.dumps(payload)
        response = Response(
            text,
            status=status,
            headers=_rate_headers() | headers,
            content_type="application/json; charset=utf-8" if payload is not None else None,
        )
        return response

    def _take_failure(self, method: str, path: str, body: Any) -> _Failure | None:
        """The first injected failure this request matches, counted as used."""
        with self._lock:
            for failure in self._failures:
                if failure.matches(method, path, body):
                    failure.remaining -= 1
                    return failure
        return None

    def _validate(self, request: Request, response: Response) -> None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

        wrapped = (
            _contents_request(request) if "/contents/" in request.path else WerkzeugOpenAPIRequest(request)
        )
        where = f"{request.method} {request.path}"
        try:
            self._openapi.validate_request(wrapped)
        except Exception as error:  # every openapi-core error is a finding to report, not to raise
            self.violations.append(f"request {where}: {_explain(error)}")
            return
        if "/contents/" in request.path and response.status_code == 200 and response.data.startswith(b"["):
            self._validate_listing(where, response)  # the description's discriminator cannot match arrays
            return
        try:
            self._openapi.validate_response(wrapped, WerkzeugOpenAPIResponse(response))
        except Exception as error:
            if response.status_code >= 400 and type(error).__name__ == "ResponseNotFound":
                return  # the description omits many error statuses; their body is GitHub's generic shape
            self.violations.append(f"response {where} {response.status_code}: {_explain(error)}")

    def _validate_listing(self, where: str, response: Response) -> None:
        """A directory listing against `content-directory` itself: GitHub's description puts it in a
        `oneOf` with a `type` discriminator, which a JSON array can never carry."""
        from openapi_schema_validator import OAS30Validator

        schema = json.loads(self._openapi_path.read_text())["components"]["schemas"]["content-directory"]
        for problem in OAS30Validator(schema).iter_errors(json.loads(response.data)):
            self.violations.append(f"response {where} 200: {problem.message[:300]}")

    # --- authentication ------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not credential or scheme.lower() not in ("bearer", "token"):
            return "none"
        if credential.count(".") == 2:
            self._verify_jwt(credential)
            return "app"
        with self._lock:
            installation, expiry = self._tokens.get(credential, (0, 0.0))
        if expiry < time.time():
            raise GitHubError(401, "Bad credentials")
        return f"installation:{installation}"

    def _verify_jwt(self, token: str) -> None:
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                leeway=60,
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as error:
            raise GitHubError(401, f"A JSON web token could not be decoded ({error})") from None
        if str(claims["iss"]) != str(self.app_id):
            raise GitHubError(401, "'Issuer' claim ('iss') must be an Integer or the App's client ID")
        if claims["exp"] - claims["iat"] > MAX_JWT_LIFETIME + 60:
            raise GitHubError(401, "'Expiration time' claim ('exp') is too far in the future")

    def _need_app(self, call: Call) -> None:
        if call.auth != "app":
            raise GitHubError(401, "A JSON web token could not be decoded")

    def _need_repo(self, call: Call, owner: str, name: str) -> Repo:
        """The repository, if the installation token may see it (GitHub answers 404 otherwise)."""
        if not call.auth.startswith("installation:"):
            raise GitHubError(401, "Requires authentication")
        repo = self._repos.get(f"{owner}/{name}".lower())
        if repo is None or f"installation:{repo.installation}" != call.auth:
            raise GitHubError(404, "Not Found")
        return repo

    # --- state helpers -------------------------------------------------------------------------

    def _user(self, login: str, *, kind: str = "User") -> dict[str, Any]:
        if login not in self._users:
            self._users[login] = obj.user(self.urls, login, next(self._ids), kind=kind)
        return self._users[login]

    def _repo(self, full_name: str) -> Repo:
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"fake GitHub has no repository {full_name}") from None

    def _issue(self, repo: Repo, number: int) -> Issue:
        if number not in repo.issues:
            raise GitHubError(404, "Not Found")
        return repo.issues[number]

    def _issue_comments(self, repo: Repo, number: int) -> list[dict[str, Any]]:
        return [c for c in self._comments.values() if c["repo"] == repo.full_name and c["issue"] == number]

    def _create_comment(
        self, repo: Repo, issue: int, body: str, author: str, *, bot: bool, cid: int | None = None
    ) -> dict:
        cid = cid or next(self._ids)
        stamp = obj.now()
        comment = {
            "id": cid,
            "repo": repo.full_name,
            "issue": issue,
            "body": body,
            "author": author,
            "bot": bot,
            "created_at": stamp,
            "updated_at": stamp,
            "reactions": [],
            "edits": 0,
            "url": f"{self.urls.api}/repos/{repo.full_name}/issues/comments/{cid}",
        }
        self._comments[cid] = comment
        return comment

    def _find_comment(self, call: Call, owner: str, repo: str, comment_id: int) -> dict[str, Any]:
        found = self._need_repo(call, owner, repo)
        comment = self._comments.get(comment_id)
        if comment is None or comment["repo"] != found.full_name:
            raise GitHubError(404, "Not Found")
        return comment

    def _comment_body(self, comment: dict[str, Any]) -> dict[str, Any]:
        repo = comment["repo"]
        author = self._user(comment["author"], kind="Bot" if comment["bot"] else "User")
        association = "NONE" if comment["bot"] else _association(self._repo(repo), comment["author"])
        return {
            "id": comment["id"],
            "node_id": obj.node_id("IC", comment["id"]),
            "url": comment["url"],
            "html_url": f"{self.urls.web}/{repo}/issues/{comment['issue']}#issuecomment-{comment['id']}",
            "issue_url": f"{self.urls.api}/repos/{repo}/issues/{comment['issue']}",
            "body": comment["body"],
            "user": author,
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "author_association": association,
            "performed_via_github_app": self._app_body() if comment["author"] == self.bot_login else None,
            "reactions": obj.reaction_rollup(comment["url"], comment["reactions"]),
        }

    def _label_for(self, repo: Repo, name: str) -> dict[str, Any]:
        if name.lower() not in repo.labels:
            self.add_label(repo.full_name, name)
        return repo.labels[name.lower()]

    def _issue_body(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        api = f"{self.urls.api}/repos/{repo.full_name}/issues/{issue.number}"
        html = f"{self.urls.web}/{repo.full_name}/issues/{issue.number}"
        body: dict[str, Any] = {
            "id": repo.rid * 100_000 + issue.number,
            "node_id": obj.node_id("I", repo.rid * 100_000 + issue.number),
            "url": api,
            "repository_url": f"{self.urls.api}/repos/{repo.full_name}",
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "timeline_url": f"{api}/timeline",
            "html_url": html,
            "number": issue.number,
            "state": issue.state,
            # GitHub sends `state_reason: null` on open issues, but its description's enum omits null
            # (OpenAPI 3.0 `nullable` + `enum`); leaving the optional field out keeps both honest.
            "title": issue.title,
            "body": issue.body,
            "user": self._user(issue.author),
            "labels": [self._label_for(repo, n) for n in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(self._issue_comments(repo, issue.number)),
            "closed_at": None,
            "created_at": issue.created_at,
            "updated_at": issue.created_at,
            "author_association": _association(repo, issue.author),
            "reactions": obj.reaction_rollup(api, issue.reactions),
        }
        if issue.pull_request:
            pull = f"{self.urls.web}/{repo.full_name}/pull/{issue.number}"
            body["pull_request"] = {
                "url": f"{self.urls.api}/repos/{repo.full_name}/pulls/{issue.number}",
                "html_url": pull,
                "diff_url": f"{pull}.diff",
                "patch_url": f"{pull}.patch",
                "merged_at": None,
            }
        return body


# Route table: (method, path as in GitHub's OpenAPI description with werkzeug converters, operation).


class _QuietHandler(WSGIRequestHandler):
    """Calls are recorded in `FakeGitHub.calls`; an access log per request would only be noise."""

    disable_nagle_algorithm = True  # TCP_NODELAY, as in bot/fakes/_http.py

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _contents_request(request: Request) -> Any:
    """GitHub's `{path}` parameter spans slashes; openapi-core's template matching does not."""
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

    class ContentsRequest(WerkzeugOpenAPIRequest):
        @property
        def path(self) -> str:
            head, _, tail = self.request.path.partition("/contents/")
            return f"{head}/contents/{tail.replace('/', '%2F')}"

    return ContentsRequest(request)


def _load_openapi(path: Path, server: str) -> Any:
    from openapi_core import OpenAPI

    spec = json.loads(path.read_text())
    spec["servers"] = [{"url": server}]
    _allow_null_in_nullable_enums(spec)
    return OpenAPI.from_dict(spec)


def _allow_null_in_nullable_enums(node: Any) -> None:
    """OpenAPI 3.0.3: `nullable` does not widen an `enum`, so null must be listed. GitHub's description
    leaves it out (a completed check run's `conclusion` is required, nullable and an enum), while GitHub
    sends null there; listing it keeps the validator strict about every other value."""
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"].append(None)
        for value in node.values():
            _allow_null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _allow_null_in_nullable_enums(value)


def _explain(error: Exception) -> str:
    """openapi-core nests the useful part (the schema errors) under `__cause__`."""
    parts = [type(error).__name__]
    cause: BaseException | None = error
    while cause is not None:
        for detail in getattr(cause, "schema_errors", None) or ():
            where = "/".join(str(p) for p in detail.absolute_path) or "(body)"
            parts.append(f"{where}: {detail.message[:300]}")
        cause = cause.__cause__
    if len(parts) == 1:
        parts.append(str(error)[:500])
    return " — ".join(parts)[:2000]
