"""A stateful fake of GitHub's REST API: a real HTTP server on 127.0.0.1 that PyGithub talks to.

Why a server and not mocks: the web process, the worker processes and the tests must all see the same
GitHub, and PyGithub must run unmodified (App JWT, installation tokens, pagination, retries) against
its `base_url`. The fake

- checks App authentication for real: the JWT is verified with the App's public key (RS256, `iss`,
  lifetime at most ten minutes) and installation tokens only open their installation's repositories;
- keeps state (repositories, issues, comments, reactions, labels, files, collaborators);
- records every call (`calls`) and, given GitHub's OpenAPI description, validates each request and its
  own answer against it, collecting `violations` (an undocumented operation is one too);
- can be told to fail (`fail_next`) so retries and error reporting are exercised;
- serves under a prefix (`/api/v3`) to stand in for GitHub Enterprise Server.

The demo (`archon-bot demo`) uses it too, so it lives in the package, not under `tests/`.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from bot.fakes import github_objects as obj
from bot.fakes import github_pulls as gp

ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}
MAX_JWT_LIFETIME = 600  # GitHub refuses App JWTs that live longer than ten minutes.


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    path: str  # without the GHES prefix
    query: dict[str, str]
    body: Any
    status: int
    auth: str  # "app", "installation:<id>", "none" or "invalid"


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


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    headers: dict[str, str]


class GitHubError(Exception):
    """Answer with GitHub's error shape."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class FakeGitHub:
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
        self._manifest_codes: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.urls = obj.Urls("http://127.0.0.1", "http://127.0.0.1")
        routes = (*ROUTES, *gp.PULL_ROUTES)
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
    ) -> None:
        """The next `times` matching requests get `status` (matched against the unprefixed path)."""
        with self._lock:
            self._failures.append(
                _Failure(method.upper(), re.compile(path_regex), status, times, headers or {})
            )

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
        response, call = self._handle(request)
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        if self._openapi is not None:
            self._validate(request, response)
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[Response, Call]:
        path = request.path[len(self.prefix) :] if request.path.startswith(self.prefix) else request.path
        call = Call(request.method, path, dict(request.args), None, 0, "none")
        try:
            body = call.body = _json_body(request)
            call.auth = self._authenticate(request)
            self._maybe_fail(request.method, path)
            endpoint, args = self._routes.bind_to_environ(request.environ).match()
            with self._changed:
                status, payload, headers = getattr(self, f"_op_{endpoint}")(request, call, body, **args)
                self._changed.notify_all()
        except GitHubError as error:
            status, payload, headers = error.status, obj.error(error.status, error.message, **error.extra), {}
        except NotFound:
            status, payload, headers = 404, obj.error(404, "Not Found"), {}
        except HTTPException as error:
            status, payload, headers = error.code or 400, obj.error(error.code or 400, error.name), {}
        call.status = status
        text = "" if payload is None else json.dumps(payload)
        response = Response(
            text,
            status=status,
            headers=_rate_headers() | headers,
            content_type="application/json; charset=utf-8" if payload is not None else None,
        )
        return response, call

    def _maybe_fail(self, method: str, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining and failure.method == method and failure.pattern.fullmatch(path):
                    failure.remaining -= 1
                    raise GitHubError(failure.status, "Injected failure (fake GitHub)")

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
        if number not in repo.pulls:
            raise GitHubError(404, "Not Found")
        return repo.pulls[number]

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
        assert found.git_dir is not None
        comments = body.get("comments") or []
        if problems := gp.unanchored(gp.pull_diff(found.git_dir, pull), comments):
            raise GitHubError(422, "Unprocessable Entity", errors=problems)
        review = gp.review_body(
            self.urls,
            found.full_name,
            pull,
            next(self._ids),
            self._user(self.bot_login, kind="Bot"),
            text,
            event,
        )
        pull.reviews.append({**review, "comments": comments})
        return 200, review, {}

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


class _QuietHandler(WSGIRequestHandler):
    """Calls are recorded in `FakeGitHub.calls`; an access log per request would only be noise."""

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
    return OpenAPI.from_dict(spec)


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
