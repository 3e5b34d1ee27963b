"""Git workspaces: a bare mirror per repository, a fresh worktree per run, pushes without a token on disk.

Layout under the data directory:

    mirrors/<owner>/<repo>.git    bare mirror; the remote's branches are fetched to `refs/remotes/origin/*`
    mirrors/<owner>/<repo>.lock   flock guarding the mirror's creation, fetches and worktree bookkeeping
                                  (never a whole run, nor a checkout)
    mirrors/<owner>/<repo>.fetch  refreshes started and finished: `sync`'s single-flight generation stamp
    mirrors/<owner>/<repo>.refresh  flock held shared by each refresh under way, from its generation being
                                  taken until its listing is applied: what a caller it serves waits on
    worktrees/<run_id>/           the run's worktree, on the run's branch
    worktrees/<run_id>.lock       flock held by the live `Worktree`; free means the run has finished
    worktrees/<run_id>.failed     `mark_failed`'s time: `cleanup` keeps the worktree a while, for debugging

The remote's branches live under `refs/remotes/origin/`, not `refs/heads/`, so a fetch never collides with a
branch some worktree has checked out; `refs/remotes/origin/HEAD` records the remote's default branch.

Reading: `snapshot` gives the files of one commit of a mirror (by default the remote's default branch as
last fetched) — how a run reads `.github/archon.yml`, its workflows and the repository's conventions without
the contents API, and from the very commit its worktree then starts from (`prepare(base=..., fetch=False)`).

Sharing: runs of one repository share its mirror, across worker processes. `sync` is single-flight — one
refresh serves every caller that asked before it started — and a refresh whose `ls-remote` finds every
branch already in the mirror fetches nothing. `prepare(fetch=True)` overlaps that `ls-remote` with the
checkout of the commit the mirror already has, and moves the worktree to the new commit only when the
listing shows something was pushed: a later run costs about what `git worktree add` does, and never misses a
push made before it asked. A blobless partial mirror (`partial=True`) skips the history's
blobs on the first run; git fetches a missing blob when a checkout or a read needs it, from the remote
each such call names on its command line, with the token in its environment as for any fetch.

Resuming: the code's state travels in the pushed branch. When the run's branch already exists on the remote,
`prepare` starts the worktree from it (`resume=True`, the default), so a retry on another machine continues
from what was pushed; `resume=False` starts afresh from the base and the next push replaces the branch.

Authentication: the installation token reaches git only through `GIT_CONFIG_*` environment variables of the
one subprocess that talks to an http(s) remote (`auth_env`) — never in a URL, a config file, or a message
(`redact` scrubs captured stderr).

Hardening: a run's model writes whatever it likes inside its worktree, so every git call the bot makes goes
through `run_git`, which
- gives git a minimal environment (`git_environment`): no worker secrets, no worker HOME, no system or global
  config — so no config file the bot did not check can define a filter, alias or URL rewrite;
- turns off, on the command line, everything that runs a program or reaches a remote (`SAFE_CONFIG`); a call
  that talks to the remote allows exactly its URL's protocol (`network_config`);
- runs a worktree's commands with an explicit `--git-dir`/`--work-tree`, so a rewritten `.git` is never used.
Before fetching, checking out, staging, committing and pushing, the repository's own config must hold only
settings git writes itself (`check_repository_config`) and the worktree's `.git` must be the file git wrote.
Pushes refuse changes to paths GitHub or git give powers to (`protected_paths`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bot.secrets import ensure_no_secrets

GIT_TIMEOUT_S = 600.0
REMOTE_REFS = "refs/remotes/origin"
FETCH_REFSPEC = f"+refs/heads/*:{REMOTE_REFS}/*"
#: The remote a partial mirror is a promisor of. Its URL is never written: each call that may fetch missing
#: blobs names it on the command line (`Workspace._lazy_fetch`).
PROMISOR = "origin"
PARTIAL_FILTER = "blob:none"
REDACTED = "***"
#: Repository files a run reads from the mirror (config, workflows, conventions) are small; a bigger one is
#: treated as absent rather than read into memory.
MAX_SNAPSHOT_FILE_BYTES = 1_000_000
SYMLINK_MODE = "120000"
#: Given to every git call: no hook, fsmonitor, attributes file or signing program whatever a config says,
#: and no transport at all unless the call adds `network_config` for its remote.
SAFE_CONFIG = (
    *("-c", "core.hooksPath=/dev/null"),
    *("-c", "core.fsmonitor=false"),
    *("-c", "core.attributesFile=/dev/null"),
    *("-c", "protocol.allow=never"),
    *("-c", "commit.gpgSign=false"),
    *("-c", "tag.gpgSign=false"),
)
#: Given to every command that produces a diff: `diff.external` and textconv drivers are programs. (An empty
#: `-c diff.external=` is no substitute: git then tries to run "" and fails.)
DIFF_OPTIONS = ("--no-color", "--no-ext-diff", "--no-textconv")
#: Remote schemes the bot talks to; a local path is git's `file` transport. `ext::` runs a command, ssh
#: would need the worker's keys.
REMOTE_SCHEMES = frozenset({"https", "http", "file"})
#: HOME for git: not the worker's (its dotfiles are config the bot never checked), a path nobody creates.
GIT_HOME = "/nonexistent"
#: The worker's variables git gets (locale, time zone, where programs and CA certificates are); everything
#: else — API keys, REDIS_URL, GITHUB_PRIVATE_KEY, GIT_* overrides — stays out of git and its children.
#: Proxy variables pass too: a worker behind a proxy must still reach its git host.
PASSED_ENV = frozenset(
    {"PATH", "TZ", "LANG", "LANGUAGE", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "ALL_PROXY"}
)
FIXED_ENV = {
    "HOME": GIT_HOME,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
#: Repository config keys (lower-cased) the bot accepts: what `git init --bare` writes on any filesystem, the
#: object format, and `gc.*` housekeeping, which names no program. The bot itself writes no config (it
#: fetches and pushes by URL), so any other key was planted. An allowlist, because a denylist would have to
#: foresee every key that runs a program (filter, textconv, fsmonitor, sshCommand, pager, ...), redirects
#: traffic (url, remote, http proxy) or pulls in more config (include, includeIf) — in every git to come.
ALLOWED_CONFIG_KEYS = frozenset(
    {
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.logallrefupdates",
        "core.ignorecase",
        "core.precomposeunicode",
        "core.symlinks",
        "extensions.objectformat",
    }
)
ALLOWED_CONFIG_PREFIXES = ("gc.",)
#: What a blobless first fetch writes (`Workspace(partial=True)`), accepted with exactly these values: they
#: name no program and no URL — the remote's URL only ever comes on the command line.
ALLOWED_CONFIG_VALUES = {
    f"remote.{PROMISOR}.promisor": "true",
    f"remote.{PROMISOR}.partialclonefilter": PARTIAL_FILTER,
}
PROTECTED_REASON = (
    "a change to .github/workflows/ would run on GitHub with the repository's secrets, and .gitattributes, "
    ".gitmodules or a path named .git change how git treats the repository's files; a person has to make "
    "such changes"
)
_REPO_PART = re.compile(r"[A-Za-z0-9_.-]+")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class GitIdentity:
    name: str
    email: str


DEFAULT_IDENTITY = GitIdentity("Archon Bot", "archon-bot@users.noreply.github.com")


class WorkspaceError(RuntimeError):
    """A git command failed; `command` and `stderr` are already free of the token."""

    def __init__(self, command: str, stderr: str, returncode: int | None = None) -> None:
        self.command, self.stderr, self.returncode = command, stderr, returncode
        detail = stderr.strip() or f"exit status {returncode}"
        super().__init__(f"`{command}` failed: {detail}")


class ProtectedPathError(WorkspaceError):
    """A push refused because the change touches `paths` (see `protected_paths`)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__("push", f"the change touches {', '.join(self.paths)}: {PROTECTED_REASON}")


def auth_env(token: str) -> dict[str, str]:
    """Environment giving one git process the token as an HTTP header (GitHub's `x-access-token` user)."""
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
    }


def redact(text: str, token: str | None) -> str:
    """`text` without the token or its base64 header form."""
    if not token:
        return text
    header = auth_env(token)["GIT_CONFIG_VALUE_0"].rsplit(" ", 1)[1]
    return text.replace(header, REDACTED).replace(token, REDACTED)


def _remote_env(url: str, token: str | None) -> dict[str, str]:
    """The token goes to http(s) remotes only; `file://` and local paths need none."""
    return auth_env(token) if token and url.startswith(("http://", "https://")) else {}


def remote_scheme(url: str) -> str:
    """The git transport `url` uses — refused unless it is one of `REMOTE_SCHEMES`. A local path is `file`;
    `host:path` is ssh and `helper::address` a remote helper such as `ext::`, which runs a command."""
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
    elif "::" in url:
        scheme = url.split("::", 1)[0].lower()
    else:
        scheme = "ssh" if ":" in url.split("/", 1)[0] else "file"
    if scheme not in REMOTE_SCHEMES:
        allowed = ", ".join(sorted(REMOTE_SCHEMES))
        raise WorkspaceError(
            f"remote {url}", f"unsupported remote URL scheme {scheme!r} (allowed: {allowed})"
        )
    return scheme


def network_config(url: str) -> tuple[str, ...]:
    """Config for a call that talks to `url`: its own protocol only (on top of `protocol.allow=never`), and
    no credential helper asking for, or storing, anything."""
    return ("-c", f"protocol.{remote_scheme(url)}.allow=always", "-c", "credential.helper=")


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a git process: `PASSED_ENV` and `LC_*` from the worker, `FIXED_ENV`, `extra`.

    Built up rather than filtered down, so a secret added to the worker's environment later cannot leak."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env.update(FIXED_ENV)
    env.update(extra or {})
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    secret: str | None = None,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git <args>` in `cwd` with `SAFE_CONFIG` and `git_environment(env)`: the one way the bot runs git.

    `secret` is scrubbed from the error; on a timeout the whole process group is killed. `input` is git's
    standard input (none by default)."""
    command = ["git", *SAFE_CONFIG, *args]
    shown = redact(_shown(args), secret)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=git_environment(env),
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise WorkspaceError(shown, f"timed out after {timeout:g}s") from None
    if check and process.returncode:
        raise WorkspaceError(shown, redact(err.decode(errors="replace"), secret), process.returncode)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _shown(args: Sequence[str]) -> str:
    """The command for messages, as a person would type it: without the leading `-c`, `--git-dir` and
    `--work-tree` options, which are the same plumbing on every call and would crowd out git's answer."""
    rest = list(args)
    while len(rest) > 1 and rest[0] in ("-c", "--git-dir", "--work-tree"):
        del rest[:2]
    return shlex.join(["git", *rest])


def git_text(args: Sequence[str], *, cwd: Path) -> str:
    """`run_git`'s output as text, for callers that parse it."""
    return run_git(args, cwd=cwd).stdout.decode(errors="replace")


def _commit_of(cwd: Path, rev: str, repo_args: Sequence[str] = ()) -> str | None:
    """The commit `rev` names in the repository at `cwd` (or `repo_args`' `--git-dir`), or None."""
    if rev.startswith("-"):
        return None
    args = [*repo_args, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    result = run_git(args, cwd=cwd, check=False)
    if result.returncode:
        return None
    return result.stdout.decode().strip() or None


def _commits_of(mirror: Path, revs: Sequence[str]) -> dict[str, str | None]:
    """The commit each of `revs` names in `mirror` (None when it names none), in one git call."""
    usable = [rev for rev in revs if rev and "\n" not in rev and not rev.startswith("-")]
    lines = "".join(f"{rev}^{{commit}}\n" for rev in usable).encode()
    args = [*_bare(mirror), "cat-file", "--batch-check=%(objectname) %(objecttype)"]
    answers = run_git(args, cwd=mirror, input=lines).stdout.decode(errors="replace").splitlines()
    found: dict[str, str | None] = dict.fromkeys(revs)
    for rev, answer in zip(usable, answers, strict=True):
        sha, _, kind = answer.rpartition(" ")
        found[rev] = sha if kind == "commit" else None
    return found


def check_repository_config(git_dir: Path) -> None:
    """Refuse a repository whose own config (`config`, and `config.worktree` were it enabled) holds a key
    outside `ALLOWED_CONFIG_KEYS`: reading the listing runs nothing, and refusing beats neutralising keys one
    by one."""
    listing = run_git(
        ["--git-dir", str(git_dir), "config", "--list", "-z", "--show-scope", "--show-origin"], cwd=git_dir
    )
    for origin, key, value in _repository_settings(listing.stdout):
        if not _allowed_setting(key.lower(), value):
            raise WorkspaceError(
                f"config check of {git_dir}",
                f"{origin} sets `{key}`, which the bot never writes, so it was planted; refusing to run git "
                "there (such a setting can run programs, redirect pushes or change what gets committed)",
            )


def _allowed_setting(key: str, value: str | None) -> bool:
    if key in ALLOWED_CONFIG_VALUES:
        return value == ALLOWED_CONFIG_VALUES[key]
    return key in ALLOWED_CONFIG_KEYS or key.startswith(ALLOWED_CONFIG_PREFIXES)


def _repository_settings(listing: bytes) -> Iterator[tuple[str, str, str | None]]:
    """(origin, key, value) of the repository-scoped entries of `git config --list -z --show-scope
    --show-origin` (value None for a bare key); the command-line ones are the bot's own `SAFE_CONFIG`."""
    fields = listing.decode(errors="replace").split("\0")
    for scope, origin, entry in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
        if scope not in ("command", "system", "global"):
            key, newline, value = entry.partition("\n")
            yield origin, key, value if newline else None


def checked_git_dir(path: Path) -> Path:
    """The git directory of the checkout (or bare repository) at `path`, for `--git-dir`.

    A linked worktree's `.git` file is writable by whatever runs in the worktree: refused when it is a
    symlink, points inside the worktree itself, or names a registration that does not point back to it."""
    dotgit = path / ".git"
    if dotgit.is_symlink():
        raise WorkspaceError(f"check {path}", f"{dotgit} is a symbolic link, not what git wrote")
    if dotgit.is_dir():
        return dotgit
    if dotgit.is_file():
        return _linked_git_dir(path)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    raise WorkspaceError(f"check {path}", f"{path} is not the top of a git repository")


def _linked_git_dir(path: Path) -> Path:
    dotgit = path / ".git"
    refused = WorkspaceError(f"check {path}", f"{dotgit} is no longer the file git wrote")
    try:
        named = Path(dotgit.read_text().removeprefix("gitdir:").strip())
        admin = named if named.is_absolute() else path / named
        back = Path((admin / "gitdir").read_text().strip())
    except (OSError, ValueError):
        raise refused from None
    if back.resolve() != dotgit.resolve() or admin.resolve().is_relative_to(path.resolve()):
        raise refused
    return admin


def protected_paths(paths: Sequence[str]) -> list[str]:
    """The paths among `paths` a pushed change must not touch: `.github/workflows/` (GitHub runs workflows
    with the repository's secrets), and `.gitattributes`, `.gitmodules` or a component named `.git` anywhere
    (they change how git treats files). Compared case-insensitively and without the trailing dots and spaces
    Windows and macOS filesystems ignore, so a variant that means the same on some checkout is refused too."""
    return [path for path in paths if _is_protected(path)]


def _is_protected(path: str) -> bool:
    parts = [part.casefold().rstrip(". ") for part in path.split("/")]
    if parts[:1] == [".github"] and (len(parts) == 1 or parts[1] == "workflows"):
        return True
    return any(part in (".git", "git~1", ".gitattributes", ".gitmodules") for part in parts)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive flock on `path`, waiting for it; works between threads and between processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _try_lock(path: Path) -> IO[str] | None:
    """The open, exclusively locked file at `path`, or None when someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a")  # noqa: SIM115 - the open file is the lock; its owner closes it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        handle.close()  # unlinked by its previous holder: lock the file now at `path`


def _registration(path: Path) -> tuple[Path, str | None] | None:
    """The mirror a worktree belongs to and its checked-out branch, from its `.git` file."""
    try:
        gitdir = (path / ".git").read_text().removeprefix("gitdir:").strip()
    except (OSError, ValueError):
        return None
    admin = (path / gitdir).resolve()
    mirror = admin.parent.parent
    if not (mirror / "HEAD").is_file():
        return None
    with contextlib.suppress(OSError):
        head = (admin / "HEAD").read_text().strip()
        if head.startswith("ref: refs/heads/"):
            return mirror, head.removeprefix("ref: refs/heads/")
    return mirror, None


@dataclass
class Worktree:
    """One run's checkout. Its run lock is held until `release` (or `Workspace.remove` / `mark_failed`);
    as a context manager it is released on exit."""

    repo: str
    path: Path
    branch: str
    #: What `diff` and `changed_files` compare against: the base commit, or for a resumed branch the point
    #: where it forked from the base — so they show the branch's whole change, as a pull request would.
    base_sha: str
    remote_url: str
    resumed: bool = False
    identity: GitIdentity = DEFAULT_IDENTITY
    #: The worktree's registration in the mirror, as `prepare` found it before the run could touch anything;
    #: every git call names it, so a `.git` the run rewrote is never read.
    git_dir: Path | None = None
    #: On a partial mirror, where git fetches a blob it lacks (`Workspace._lazy_fetch`); no token, so a
    #: private remote's blobs must already be there (`prepare` fetches those `diff` needs).
    lazy: tuple[str, ...] = ()
    #: The commit the base named when the worktree was made (the remote's default branch by default) —
    #: where a run reads its config from after `prepare(fetch=True)`; `base_sha` is the fork point instead
    #: on a resumed branch.
    base_tip: str | None = None
    _lock: IO[str] | None = field(default=None, repr=False, compare=False)

    def head(self) -> str:
        return self._git(["rev-parse", "HEAD"]).stdout.decode().strip()

    def diff(self) -> str:
        """Unified diff from `base_sha` to the working tree, new files included.

        Everything is staged first (`git add -A`, honouring .gitignore): the worktree belongs to the bot, so
        its index carries no meaning to preserve, and `commit` stages the same way.
        """
        self._stage()
        args = ["diff", "--cached", *DIFF_OPTIONS, "-M", self.base_sha]
        return self._git(args).stdout.decode(errors="replace")

    def changed_files(self) -> list[str]:
        """Paths added, modified or deleted since `base_sha` (a rename lists both paths)."""
        self._stage()
        return self._names("--cached", self.base_sha)

    def pushed_diff(self) -> str:
        """The committed change a push of HEAD would publish, from where it forked from `base_sha`."""
        fork = self._git(["merge-base", self.base_sha, "HEAD"], check=False).stdout.decode().strip()
        return self._git(["diff", *DIFF_OPTIONS, fork or self.base_sha, "HEAD"]).stdout.decode(
            errors="replace"
        )

    def pushed_files(self) -> list[str]:
        """Paths HEAD changes since it forked from `base_sha`: what a push of HEAD would change."""
        fork = self._git(["merge-base", self.base_sha, "HEAD"], check=False).stdout.decode().strip()
        return self._names(fork or self.base_sha, "HEAD")

    def commit(
        self, message: str, author_name: str | None = None, author_email: str | None = None
    ) -> str | None:
        """Commit every change; the new HEAD, or None when there is nothing to commit."""
        self._stage()
        unchanged = self._git(["diff", "--cached", "--quiet", *DIFF_OPTIONS, "HEAD"], check=False)
        if unchanged.returncode == 0:
            return None
        name, email = author_name or self.identity.name, author_email or self.identity.email
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        self._git(["commit", "--quiet", "--no-verify", "-m", message], env=env)
        return self.head()

    def push(self, token: str | None) -> None:
        """Push HEAD to the run's branch on the remote, replacing it only if it is still what we last saw.

        Refused (`ProtectedPathError`) when the branch changes a protected path: GitHub acts on pushed code;
        refused (`SecretInDiffError`) when it adds a secret: a push is public and cannot be taken back.
        """
        self.verify()
        if touched := protected_paths(self.pushed_files()):
            raise ProtectedPathError(touched)
        ensure_no_secrets(self.pushed_diff())
        tracking = f"{REMOTE_REFS}/{self.branch}"
        # empty: the branch must not exist yet
        expected = _commit_of(self.path, tracking, self._repo_args()) or ""
        head = self.head()
        lease = f"--force-with-lease=refs/heads/{self.branch}:{expected}"
        args = [*network_config(self.remote_url), "push", "--quiet", "--no-verify", lease, self.remote_url]
        args.append(f"{head}:refs/heads/{self.branch}")
        self._git(args, env=_remote_env(self.remote_url, token), secret=token)
        self._git(["update-ref", tracking, head])

    def verify(self) -> None:
        """Refuse to stage, commit or push when the `.git` file is not the one git wrote, or the repository's
        config holds a planted setting: either means something in the run tried to reach the bot's git."""
        git_dir, dotgit = self._admin(), self.path / ".git"
        try:
            written = None if dotgit.is_symlink() else dotgit.read_text()
        except OSError:  # a directory, or gone
            written = None
        if written is None or written.strip() != f"gitdir: {git_dir}":
            raise WorkspaceError(f"check {self.path}", f"{dotgit} is no longer the file git wrote")
        check_repository_config(git_dir)

    def __enter__(self) -> Worktree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Let go of the run lock: the run has finished, and `cleanup` may remove the worktree."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _stage(self) -> None:
        self.verify()
        self._git(["add", "-A"])

    def _names(self, *revs: str) -> list[str]:
        args = ["diff", "--name-only", "--no-renames", "-z", *DIFF_OPTIONS, *revs]
        return [os.fsdecode(name) for name in self._git(args).stdout.split(b"\0") if name]

    def _admin(self) -> Path:
        if self.git_dir is None:  # made without `prepare`: take the `.git` file's word, once
            self.git_dir = _linked_git_dir(self.path)
        return self.git_dir

    def _repo_args(self) -> list[str]:
        return ["--git-dir", str(self._admin()), "--work-tree", str(self.path)]

    def _git(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secret: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        return run_git(
            [*self.lazy, *self._repo_args(), *args], cwd=self.path, env=env, secret=secret, check=check
        )


@dataclass(frozen=True)
class TreeEntry:
    """One `git ls-tree --long` line: what a path is in a commit, and how big."""

    mode: str
    kind: str
    sha: str
    size: int | None
    path: str


@dataclass(frozen=True)
class Snapshot:
    """The files of one commit of a mirror, read through `run_git`: nothing is checked out, so no filter,
    hook or attribute of the repository comes into play. Texts are decoded as UTF-8 (bad bytes replaced).

    Same answers as `RepoForge.read_file` / `read_dir` over the contents API, one git call per file."""

    mirror: Path
    commit: str
    #: Config naming the remote a partial mirror fetches missing blobs from (`Workspace._lazy_fetch`).
    lazy: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret: str | None = field(default=None, repr=False)

    def read_file(self, path: str, *, max_bytes: int = MAX_SNAPSHOT_FILE_BYTES) -> str | None:
        """The text of the file at `path`, or None when there is none (or it is a folder, or larger than
        `max_bytes`). A symbolic link inside the repository is followed once (`CLAUDE.md -> AGENTS.md`)."""
        entry = self._entry(path)
        if entry is not None and entry.mode == SYMLINK_MODE:
            entry = self._entry(_link_target(path, self._blob(entry.sha)))
        if entry is None or entry.kind != "blob" or entry.mode == SYMLINK_MODE:
            return None
        if entry.size is not None and entry.size > max_bytes:
            return None
        return self._blob(entry.sha)

    def read_dir(self, folder: str) -> dict[str, str]:
        """The files directly in `folder`, by path; {} when it does not exist."""
        files = {}
        for entry in self._entries(folder.strip("/") + "/"):
            if entry.kind == "blob" and entry.mode != SYMLINK_MODE:
                files[entry.path] = self._blob(entry.sha)
        return files

    def _entry(self, path: str | None) -> TreeEntry | None:
        if not path or path.startswith("-"):
            return None
        return next((e for e in self._entries(path.strip("/")) if e.path == path.strip("/")), None)

    def _entries(self, pathspec: str) -> list[TreeEntry]:
        # `--long` reads each blob's size: on a partial mirror that fetches it, hence `lazy`
        args = [*self.lazy, *_bare(self.mirror), "ls-tree", "-z", "--long", "--full-tree", self.commit]
        args += ["--", pathspec]
        listing = self._git(args).stdout.decode(errors="replace")
        return [_tree_entry(line) for line in listing.split("\0") if line]

    def _blob(self, sha: str) -> str:
        blob = self._git([*self.lazy, *_bare(self.mirror), "cat-file", "blob", sha])
        return blob.stdout.decode(errors="replace")

    def _git(self, args: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        return run_git(args, cwd=self.mirror, env=self.env, secret=self.secret)


def _tree_entry(line: str) -> TreeEntry:
    """`<mode> SP <type> SP <sha> SP+ <size> TAB <path>`; a folder's size is `-`."""
    meta, _, path = line.partition("\t")
    mode, kind, sha, size = meta.split()
    return TreeEntry(mode, kind, sha, None if size == "-" else int(size), path)


def _link_target(path: str, target: str) -> str | None:
    """The repository path a symbolic link at `path` names, or None when it leaves the repository."""
    if target.startswith("/"):
        return None
    parts: list[str] = []
    for part in [*path.split("/")[:-1], *target.strip().split("/")]:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts) or None


class Workspace:
    """Mirrors and worktrees under `data_dir`; remotes at `{git_url}/{owner}/{repo}.git`."""

    def __init__(
        self,
        data_dir: Path,
        git_url: str,
        *,
        identity: GitIdentity = DEFAULT_IDENTITY,
        remotes: Mapping[str, str] | None = None,
        partial: bool = False,
    ) -> None:
        """`remotes`: explicit URLs (or local paths) for some repositories, e.g. `archon-bot run` on a
        checkout: `{"local/myproject": "/home/me/myproject"}`. `partial`: a new mirror is a blobless
        partial clone (`--filter=blob:none`) where the remote allows filters — full where it refuses;
        git then fetches the blobs a checkout or a read needs, through `_lazy_fetch`'s remote."""
        self.data_dir = Path(data_dir)
        self.git_url = git_url.rstrip("/")
        self.remotes = dict(remotes or {})
        self.identity = identity
        self.mirrors = self.data_dir / "mirrors"
        self.worktrees = self.data_dir / "worktrees"
        self.partial = partial
        #: What this object's `sync` calls did: refreshes made (the others were served by someone else's)
        #: and, of those, fetches (the rest found every ref already in the mirror).
        self.refreshes = 0
        self.fetches = 0

    def remote_url(self, repo: str) -> str:
        if repo in self.remotes:
            return self.remotes[repo]
        return f"{self.git_url}/{_checked_repo(repo)}.git"

    def mirror_path(self, repo: str) -> Path:
        return self.mirrors / f"{_checked_repo(repo)}.git"

    def worktree_path(self, run_id: str) -> Path:
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"unusable run id {run_id!r}")
        return self.worktrees / run_id

    def prepare(
        self,
        repo: str,
        run_id: str,
        branch: str,
        *,
        token: str | None,
        base: str | None = None,
        resume: bool = True,
        fetch: bool = True,
    ) -> Worktree:
        """A fresh worktree for the run on `branch`, from `base` (a remote branch or a commit; default: the
        remote's default branch) — or from the remote `branch` itself when it exists and `resume` is set.

        `fetch=True`: `sync` and the checkout in one call, overlapped (`_checkout`), so a later run pays for
        the remote's round trip only when something was pushed. `fetch=False`: the caller has just `sync`ed
        (to read the repository's files first); no second refresh.

        An earlier worktree of the same run id (a retry on this machine) is replaced; one still held by a
        live run is refused.
        """
        path = self.worktree_path(run_id)
        # git calls on threads, beside the ones the checkout waits for: the branch name's check, the listing
        # of the mirror's refs (both joined before the worktree is added) and, for `fetch`, the remote's
        with ThreadPoolExecutor(max_workers=3) as pool:
            branch_ok = pool.submit(self._check_branch, branch)
            lock = _try_lock(self._marker(run_id, ".lock"))
            if lock is None:
                raise WorkspaceError(f"prepare {run_id}", f"run {run_id} already has a worktree in use")
            url, mirror = self.remote_url(repo), self.mirror_path(repo)
            try:
                if fetch and not (mirror / "HEAD").is_file():  # a first run: no commit to check out meanwhile
                    branch_ok.result()
                    self.sync(repo, token=token)
                    fetch = False
                self._discard(path, keep_lock=True)
                start, git_dir, lazy = self._checkout(
                    repo, path, branch, base, resume, token, pool, branch_ok, fresh=fetch
                )
                if lazy and start.resumed:  # `diff` compares with the fork point: its blobs, with the token
                    self.hydrate(repo, [start.fork], token=token)
            except BaseException:
                lock.close()
                raise
        worktree = Worktree(
            repo, path, branch, start.fork, url, start.resumed, self.identity, git_dir, _lock=lock
        )
        worktree.lazy, worktree.base_tip = lazy, start.tip
        return worktree

    def _checkout(
        self,
        repo: str,
        path: Path,
        branch: str,
        base: str | None,
        resume: bool,
        token: str | None,
        pool: ThreadPoolExecutor,
        branch_ok: Future[None],
        *,
        fresh: bool,
    ) -> tuple[Start, Path, tuple[str, ...]]:
        """Register the run's worktree and check it out at the start commit the mirror has now; `fresh`:
        with the freshness check of `sync` under way meanwhile (the remote's `ls-remote` on a thread). When
        the check finds nothing new — the common case — the worktree is already right; when it fetched, or
        another process's refresh did, the start is resolved again and the worktree moves there (`reset
        --hard`, which rewrites only the files that differ). Either way the worktree has every push made
        before the call.

        Worktree registrations live in the mirror: adding one while another process fetches (or removes one)
        makes git read a half-written `worktrees/<id>/HEAD`. The mirror lock orders the bookkeeping; the
        checkout, which writes only the new worktree's own files, runs outside it."""
        mirror, url = self.mirror_path(repo), self.remote_url(repo)
        network, env = network_config(url), _remote_env(url, token)
        ticket = _read_stamp(mirror.with_suffix(".fetch")).started
        with contextlib.ExitStack() as held:
            with _locked(mirror.with_suffix(".lock")):
                # the refs the worktree starts from (what the remote's listing is compared with), read while
                # the config is checked: reading refs runs nothing a planted setting could name
                listed = pool.submit(_local_refs, mirror) if fresh or base is None else None
                check_repository_config(mirror)  # another process may have fetched since the last check
                check = self._begin_check(mirror, url, network, token, ticket, pool) if fresh else None
                if check is not None:
                    held.callback(check.close)
                seen = listed.result() if listed is not None else None
                start = self._find_start(mirror, repo, branch, base, resume, waiting=check, refs=seen)
                branch_ok.result()
                if start is not None:
                    git_dir = self._add(mirror, path, branch, start.commit)
            if check is not None and start is None:  # the base is not in the mirror (yet): check first
                if not check.served:
                    self._finish_check(repo, check, token)
                return self._checkout(repo, path, branch, base, resume, token, pool, branch_ok, fresh=False)
            lazy = self._lazy_fetch(mirror, url)
            repo_args = [*lazy, "--git-dir", str(git_dir), "--work-tree", str(path)]
            run_git([*repo_args, "read-tree", "--reset", "-u", "HEAD"], cwd=path, env=env, secret=token)
            if check is not None and not check.served and not self._finish_check(repo, check, token, seen):
                moved = self._start(mirror, repo, branch, base, resume)
                if moved.commit != start.commit:
                    reset = [*repo_args, "reset", "--hard", "--quiet", moved.commit]
                    run_git(reset, cwd=path, env=env, secret=token)
                start = moved
        return start, git_dir, lazy

    def hydrate(self, repo: str, revs: Sequence[str], *, token: str | None) -> None:
        """Fetch, in one request, every blob of `revs`' trees a partial mirror lacks — before code that
        reads them without the remote's URL or the token (a `clone --shared` for validation, a sandboxed
        command). Nothing to do on a full mirror."""
        mirror, url = self.mirror_path(repo), self.remote_url(repo)
        if not _is_partial(mirror):
            return
        listing = [
            *_bare(mirror),
            "rev-list",
            "--objects",
            "--no-walk",
            "--missing=print",
            "--end-of-options",
        ]
        found = run_git([*listing, *revs], cwd=mirror).stdout.splitlines()
        missing = b"".join(line[1:] + b"\n" for line in found if line.startswith(b"?"))
        if not missing:
            return
        fetch = [
            "-c",
            "fetch.negotiationAlgorithm=noop",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
        ]
        fetch += ["--recurse-submodules=no", f"--filter={PARTIAL_FILTER}", "--stdin", PROMISOR]
        args = [*self._lazy_fetch(mirror, url), *_bare(mirror), *fetch]
        run_git(args, cwd=mirror, env=_remote_env(url, token), secret=token, input=missing)

    def _find_start(
        self,
        mirror: Path,
        repo: str,
        branch: str,
        base: str | None,
        resume: bool,
        *,
        waiting: FreshnessCheck | None,
        refs: RefState | None,
    ) -> Start | None:
        """`_start`, or None when it fails while a freshness check is `waiting` to be finished (a base pushed
        moments ago is not in the mirror yet; the check's fetch may bring it)."""
        try:
            return self._start(mirror, repo, branch, base, resume, refs)
        except WorkspaceError:
            if waiting is None or waiting.served:
                raise
            return None

    def _add(self, mirror: Path, path: Path, branch: str, commit: str) -> Path:
        """Register the worktree at `path` on `branch` at `commit`, not checked out (the caller holds the
        mirror's lock); its registration in the mirror."""
        args = ["worktree", "add", "--quiet", "--no-checkout", "--no-track", "-B", branch, str(path), commit]
        run_git(["--git-dir", str(mirror), *args], cwd=mirror)
        return _new_git_dir(mirror, path)

    def sync(self, repo: str, *, token: str | None) -> Path:
        """Create the repository's mirror on first use, else bring it up to date; return its path.

        Single-flight, across processes sharing the data dir: a caller that asked while another's refresh
        was under way gets that refresh's result instead of making its own, provided it *started* after the
        caller asked (so a push made before the ask is always seen). `<mirror>.fetch` holds two numbers:
        refreshes started, refreshes finished; the generation read on asking is the caller's ticket
        (`_begin_check`). A new mirror is made and fetched under the mirror's lock, so nobody reads it half
        made."""
        mirror, url = self.mirror_path(repo), self.remote_url(repo)
        network = network_config(url)  # an unusable URL is refused before anything is created
        ticket = _read_stamp(mirror.with_suffix(".fetch")).started
        with ThreadPoolExecutor(max_workers=1) as pool, contextlib.ExitStack() as held:
            with _locked(mirror.with_suffix(".lock")):
                created = not (mirror / "HEAD").is_file()
                if created:
                    shutil.rmtree(mirror, ignore_errors=True)
                    run_git(["init", "--bare", "--quiet", str(mirror)], cwd=mirror.parent)
                # before the remote is listed or fetched from, and so before any checkout from the mirror
                check_repository_config(mirror)
                if created:
                    self._refresh_now(repo, mirror, network, token, partial=self.partial)
                    return mirror
                check = self._begin_check(mirror, url, network, token, ticket, pool)
                held.callback(check.close)
            if not check.served:
                self._finish_check(repo, check, token)
        return mirror

    def _begin_check(
        self,
        mirror: Path,
        url: str,
        network: Sequence[str],
        token: str | None,
        ticket: int,
        pool: ThreadPoolExecutor,
    ) -> FreshnessCheck:
        """Under the mirror's lock: decide whether this caller needs a refresh of its own, and if so start
        its `ls-remote` on `pool`. A refresh that started after the caller asked (`started > ticket`) serves
        it: finished already, or to be waited for (`_finish_check`). Otherwise the caller's refresh takes the
        next generation and holds `<mirror>.refresh` shared until it has applied its listing, so a caller it
        serves can wait for it without the mirror's lock."""
        stamp = mirror.with_suffix(".fetch")
        state = _read_stamp(stamp)
        if state.started > ticket:
            return FreshnessCheck(ticket, served=state.finished > ticket)
        held = _shared_lock(mirror.with_suffix(".refresh"))
        generation = self._take_generation(stamp, state)
        listing = pool.submit(_list_remote, mirror, url, network, token)
        return FreshnessCheck(ticket, generation=generation, listing=listing, held=held)

    def _finish_check(
        self, repo: str, check: FreshnessCheck, token: str | None, seen: RefState | None = None
    ) -> bool:
        """Make the mirror as fresh as `check` requires. True when the remote's listing matches `seen` (the
        mirror's refs the caller read at `_begin_check`, under the same hold of the lock): what the caller
        made from them is fresh, and nothing needs a git call. False: the refs may have moved since; the
        caller resolves again."""
        mirror, url = self.mirror_path(repo), self.remote_url(repo)
        network, stamp = network_config(url), mirror.with_suffix(".fetch")
        if check.listing is None:  # served by a refresh under way: wait for every one to end
            _wait_for(mirror.with_suffix(".refresh"))
            with _locked(mirror.with_suffix(".lock")):
                if _read_stamp(stamp).finished <= check.ticket:  # that refresh failed: one of our own
                    self._refresh_now(repo, mirror, network, token, partial=False)
            return False
        remote = check.listing.result()
        fresh = seen is not None and remote.branches == seen.branches and remote.head in (None, seen.head)
        with _locked(mirror.with_suffix(".lock")):
            state = _read_stamp(stamp)
            # nothing new since `seen` (the mirror only moves forward), or a refresh begun after this one has
            # already applied a newer listing (never go back to ours): nothing to apply
            if not fresh and state.finished < check.generation:
                self._apply(repo, mirror, remote, token)
            _mark_finished(stamp, check.generation)
        check.close()
        return fresh

    def _refresh_now(
        self, repo: str, mirror: Path, network: Sequence[str], token: str | None, *, partial: bool
    ) -> None:
        """A whole refresh under the mirror's lock (the caller holds it): a new mirror's first fetch
        (`partial`: blobless), or a caller's own after the refresh it waited for failed."""
        stamp = mirror.with_suffix(".fetch")
        generation = self._take_generation(stamp, _read_stamp(stamp))
        check_repository_config(mirror)  # before git reads it to reach the remote
        remote = _list_remote(mirror, self.remote_url(repo), network, token)
        self._apply(repo, mirror, remote, token, partial=partial)
        _mark_finished(stamp, generation)

    def _take_generation(self, stamp: Path, state: FetchStamp) -> int:
        """Under the mirror's lock: start the next refresh (`started + 1`), counted; its generation."""
        generation = state.started + 1
        _write_stamp(stamp, FetchStamp(generation, state.finished))
        self.refreshes += 1
        return generation

    def _apply(
        self, repo: str, mirror: Path, remote: RefState, token: str | None, *, partial: bool = False
    ) -> None:
        """Under the mirror's lock: bring `REMOTE_REFS` and the default branch up to `remote` (a listing of
        the remote's). When the mirror already has every branch at its sha there is nothing to fetch."""
        url = self.remote_url(repo)
        network = network_config(url)
        local = _local_refs(mirror)
        fetched = remote.branches != local.branches
        if fetched:
            check_repository_config(mirror)  # right before git reads it to fetch
            _fetch(mirror, url, network, _remote_env(url, token), token, partial=partial)
            run_git([*_bare(mirror), "worktree", "prune"], cwd=mirror)
            self.fetches += 1
        moved = remote.head is not None and remote.head != local.head
        if moved:
            head = ["symbolic-ref", f"{REMOTE_REFS}/HEAD", f"{REMOTE_REFS}/{remote.head}"]
            run_git([*_bare(mirror), *head], cwd=mirror)
        if fetched:  # the default branch's files: what runs read and check out, now with the token
            self.hydrate(repo, [f"{REMOTE_REFS}/HEAD"], token=token)

    def snapshot(self, repo: str, rev: str | None = None, *, token: str | None = None) -> Snapshot:
        """The files of `rev` (default: the remote's default branch, as the last `sync` fetched it) in the
        repository's mirror: how a run reads its config, workflows and conventions without the API.
        `token`: for a partial mirror's lazy fetches of another commit's blobs (`sync` already fetched the
        default branch's)."""
        mirror = self.mirror_path(repo)
        check_repository_config(mirror)
        url = self.remote_url(repo)
        lazy = self._lazy_fetch(mirror, url)
        env = _remote_env(url, token) if lazy else {}
        return Snapshot(mirror, self._base(mirror, repo, rev), lazy, env, token)

    def mark_failed(self, worktree: Worktree) -> None:
        """Keep the worktree for debugging: `cleanup` removes it only after `keep_failed_s`."""
        self._marker(worktree.path.name, ".failed").write_text(f"{time.time()}\n")
        worktree.release()

    def remove(self, worktree: Worktree) -> None:
        """Remove the worktree, its local branch and its markers (the pushed branch stays)."""
        self._discard(worktree.path, worktree.branch)
        worktree.release()

    def remove_run(self, run_id: str) -> None:
        """Remove a run's worktree found on disk; refused while a live run holds it."""
        lock = _try_lock(self._marker(run_id, ".lock"))
        if lock is None:
            raise WorkspaceError(f"remove {run_id}", f"the worktree of run {run_id} is in use")
        with lock:
            self._discard(self.worktree_path(run_id))

    def cleanup(self, keep_failed_s: float) -> list[str]:
        """Remove the worktrees of finished runs (nobody holds their lock); failed ones once older than
        `keep_failed_s`. Returns the run ids removed."""
        if not self.worktrees.is_dir():
            return []
        removed = []
        for run_id in sorted({entry.name.split(".", 1)[0] for entry in self.worktrees.iterdir()}):
            # `<run_id>/`, `<run_id>.lock`, `<run_id>.failed`: run ids have no dots
            lock = _try_lock(self._marker(run_id, ".lock"))
            if lock is None:
                continue
            with lock:
                failed_at = self._failed_at(run_id)
                if failed_at is not None and time.time() - failed_at < keep_failed_s:
                    continue
                self._discard(self.worktrees / run_id)
                removed.append(run_id)
        return removed

    def _lazy_fetch(self, mirror: Path, url: str) -> tuple[str, ...]:
        """For a partial mirror: config naming the remote git fetches missing blobs from, and allowing its
        protocol — the URL on the command line, never in the mirror's config. () for a full mirror."""
        if not _is_partial(mirror):
            return ()
        return (*network_config(url), "-c", f"remote.{PROMISOR}.url={url}")

    def _start(
        self,
        mirror: Path,
        repo: str,
        branch: str,
        base: str | None,
        resume: bool,
        refs: RefState | None = None,
    ) -> Start:
        """Where the run starts, what it compares against, and whether it resumes a pushed branch. The
        candidates are resolved from `refs` (the mirror's, when the caller has read them) or in one
        `cat-file --batch-check` (this is on every run's path), the fork point only when the run resumes."""
        names = [f"{REMOTE_REFS}/HEAD"] if base is None else [f"{REMOTE_REFS}/{base}", base]
        pushed_name = f"{REMOTE_REFS}/{branch}" if resume else None
        found = _resolve(mirror, [*names, *([pushed_name] if pushed_name else [])], refs)
        base_sha = next((found[name] for name in names if found.get(name)), None)
        if base_sha is None:
            what = "the remote's default branch" if base is None else repr(base)
            raise WorkspaceError(f"prepare {repo}", f"cannot find {what} in {repo}")
        pushed = found.get(pushed_name) if pushed_name else None
        if pushed is None:
            return Start(base_sha, base_sha, base_sha, False)
        fork = run_git([*_bare(mirror), "merge-base", pushed, base_sha], cwd=mirror, check=False)
        return Start(pushed, fork.stdout.decode().strip() or base_sha, base_sha, True)

    def _base(self, mirror: Path, repo: str, base: str | None) -> str:
        return self._start(mirror, repo, "HEAD", base, resume=False).tip

    def _check_branch(self, branch: str) -> None:
        self.worktrees.mkdir(parents=True, exist_ok=True)
        result = run_git(["check-ref-format", "--branch", branch], cwd=self.worktrees, check=False)
        if result.returncode or result.stdout.decode().strip() != branch:
            raise ValueError(f"unusable branch name {branch!r}")

    def _discard(self, path: Path, branch: str | None = None, *, keep_lock: bool = False) -> None:
        """Remove the worktree at `path` (if any), its registration, local branch and markers. The caller
        holds the run lock; unless it keeps using it, the lock file is unlinked before the lock is let go."""
        registration = _registration(path)
        if registration is not None and not registration[0].is_relative_to(self.mirrors.resolve()):
            registration = None  # the `.git` file was rewritten to name a repository that is not ours
        if registration is None:
            if path.exists() or path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        else:
            mirror, checked_out = registration
            with _locked(mirror.with_suffix(".lock")):  # see `prepare`
                remove = [*_bare(mirror), "worktree", "remove", "--force", "--force", str(path)]
                run_git(remove, cwd=mirror, check=False)
                if path.exists() or path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                run_git([*_bare(mirror), "worktree", "prune"], cwd=mirror, check=False)
                for name in {branch, checked_out} - {None}:
                    run_git([*_bare(mirror), "branch", "-D", str(name)], cwd=mirror, check=False)
        for suffix in (".failed",) if keep_lock else (".failed", ".lock"):
            self._marker(path.name, suffix).unlink(missing_ok=True)

    def _failed_at(self, run_id: str) -> float | None:
        marker = self._marker(run_id, ".failed")
        try:
            return float(marker.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return marker.stat().st_mtime

    def _marker(self, run_id: str, suffix: str) -> Path:
        return self.worktree_path(run_id).with_name(run_id + suffix)


def _bare(mirror: Path) -> list[str]:
    """Name the mirror explicitly, rather than have git discover a repository from the working directory."""
    return ["--git-dir", str(mirror)]


def _list_remote(mirror: Path, url: str, network: Sequence[str], token: str | None) -> RefState:
    """The remote's branches and default branch, from one `ls-remote` (no object is transferred)."""
    listing = [*_bare(mirror), *network, "ls-remote", "--symref", url, "HEAD", "refs/heads/*"]
    env = _remote_env(url, token)
    return _remote_refs(run_git(listing, cwd=mirror, env=env, secret=token).stdout.decode(errors="replace"))


def _fetch(
    mirror: Path,
    url: str,
    network: Sequence[str],
    env: Mapping[str, str],
    token: str | None,
    *,
    partial: bool,
) -> None:
    """Fetch the remote's branches into `REMOTE_REFS`. A partial first fetch goes through the named remote
    `PROMISOR` (git requires one for a filter), its URL on the command line; git records the mirror as a
    promisor of that remote. A remote that refuses filters sends everything, and the mirror is full."""
    options = ["--quiet", "--prune", "--no-tags"]
    if partial or _is_partial(mirror):
        target = ["-c", f"remote.{PROMISOR}.url={url}", "fetch", *options]
        target += [f"--filter={PARTIAL_FILTER}", PROMISOR] if partial else [PROMISOR]
    else:
        target = ["fetch", *options, url]
    run_git([*_bare(mirror), *network, *target, FETCH_REFSPEC], cwd=mirror, env=env, secret=token)
    if partial and not _missing_blobs(mirror):
        _unmark_partial(mirror)


@dataclass(frozen=True)
class RefState:
    """A repository's branches (name → sha) and the branch its HEAD names; `other`: the branches whose
    object is not a commit (from the mirror's listing only)."""

    branches: dict[str, str]
    head: str | None
    other: frozenset[str] = frozenset()


def _remote_refs(listing: str) -> RefState:
    """`ls-remote --symref` output: `ref: refs/heads/<b>\tHEAD` and `<sha>\t<ref>` lines."""
    branches, head = {}, None
    for line in listing.splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: refs/heads/") and name == "HEAD":
            head = value.removeprefix("ref: refs/heads/")
        elif name.startswith("refs/heads/"):
            branches[name.removeprefix("refs/heads/")] = value
    return RefState(branches, head)


def _local_refs(mirror: Path) -> RefState:
    """The mirror's copy of the remote's branches, and the one `REMOTE_REFS/HEAD` names."""
    format = "--format=%(objectname) %(objecttype) %(refname) %(symref)"
    listing = git_text([*_bare(mirror), "for-each-ref", format, f"{REMOTE_REFS}/"], cwd=mirror)
    branches, head, other = {}, None, set()
    for line in listing.splitlines():
        sha, kind, name, *symref = line.split(" ")
        short = name.removeprefix(f"{REMOTE_REFS}/")
        if short == "HEAD":
            head = symref[0].removeprefix(f"{REMOTE_REFS}/") if symref and symref[0] else None
        else:
            branches[short] = sha
            if kind != "commit":
                other.add(short)
    return RefState(branches, head, frozenset(other))


#: What only a revision expression (`main~1`, `HEAD@{1}`, `a..b`), never a ref name, contains.
_REV_SYNTAX = re.compile(r"[~^:?*\[\\\s]|@\{|\.\.")


def _resolve(mirror: Path, revs: Sequence[str], refs: RefState | None) -> dict[str, str | None]:
    """The commit each of `revs` names in `mirror`: a plain name under `REMOTE_REFS` from `refs` (the
    mirror's listing, already read: no git call), the rest in one `_commits_of`."""
    found: dict[str, str | None] = {}
    for rev in revs:
        if refs is not None and (name := _listed_name(rev, refs)) is not None:
            found[rev] = refs.branches.get(name)
    rest = [rev for rev in revs if rev not in found]
    return {**found, **(_commits_of(mirror, rest) if rest else {})}


def _listed_name(rev: str, refs: RefState) -> str | None:
    """The branch of `refs` whose entry answers for `rev` (absent from `refs`: `rev` names no commit), or
    None when only git can tell: not a plain name under `REMOTE_REFS`, or a branch holding something other
    than a commit."""
    prefix = f"{REMOTE_REFS}/"
    if not rev.startswith(prefix) or _REV_SYNTAX.search(rev):
        return None
    name = rev.removeprefix(prefix)
    if name == "HEAD":
        name = refs.head or ""
    return None if not name or name in refs.other else name


def _is_partial(mirror: Path) -> bool:
    """Whether the mirror is a promisor of `PROMISOR` (it may lack blobs). Read from the config file
    without a git call (this is on every `prepare`): of the keys `check_repository_config` accepts, only
    `remote.origin.promisor` says `promisor`; a planted one is refused by that check anyway."""
    try:
        return b"promisor" in (mirror / "config").read_bytes().lower()
    except FileNotFoundError:
        return False


def _missing_blobs(mirror: Path) -> bool:
    listing = [*_bare(mirror), "rev-list", "--objects", "--missing=print", "--all"]
    return any(line.startswith(b"?") for line in run_git(listing, cwd=mirror).stdout.splitlines())


def _unmark_partial(mirror: Path) -> None:
    """The remote refused the filter and sent every object: a full mirror, recorded as one."""
    run_git([*_bare(mirror), "config", "--remove-section", f"remote.{PROMISOR}"], cwd=mirror)


@dataclass(frozen=True)
class FetchStamp:
    """`<mirror>.fetch`: refreshes started and finished, the single-flight generation counter of `sync`."""

    started: int = 0
    finished: int = 0


def _read_stamp(path: Path) -> FetchStamp:
    try:
        started, finished = path.read_text().split()
    except FileNotFoundError:
        return FetchStamp()
    return FetchStamp(int(started), int(finished))


def _write_stamp(path: Path, stamp: FetchStamp) -> None:
    """Replaced whole, so a reader without the lock sees the old stamp or the new one, never half."""
    scratch = path.with_name(f"{path.name}.{os.getpid()}")
    scratch.write_text(f"{stamp.started} {stamp.finished}\n")
    os.replace(scratch, path)


@dataclass
class FreshnessCheck:
    """One caller's refresh between `Workspace._begin_check` and `_finish_check`. `served`: a refresh that
    started after the caller asked had already finished. `listing` (the caller's own `ls-remote`, under
    way) is None when another's refresh serves the caller; `held` is the shared lock on `<mirror>.refresh`
    the caller's own refresh keeps until it has applied its listing."""

    ticket: int
    served: bool = False
    generation: int = 0
    listing: Future[RefState] | None = None
    held: IO[str] | None = None

    def close(self) -> None:
        if self.held is not None:
            self.held.close()
            self.held = None


@dataclass(frozen=True)
class Start:
    """Where a worktree starts (`commit`), what it diffs against (`fork`), and the commit the base named
    (`tip`; the fork point differs from it on a resumed branch)."""

    commit: str
    fork: str
    tip: str
    resumed: bool


def _shared_lock(path: Path) -> IO[str]:
    """The open file at `path`, flocked shared (waiting for an exclusive holder); its owner closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - the open file is the lock; its owner closes it
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def _wait_for(path: Path) -> None:
    """Until nobody holds `path`'s flock shared: every refresh under way has applied its listing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)


def _mark_finished(stamp: Path, generation: int) -> None:
    """Under the mirror's lock: refresh `generation` has ended; `finished` never goes back."""
    state = _read_stamp(stamp)
    _write_stamp(stamp, FetchStamp(state.started, max(state.finished, generation)))


def _new_git_dir(mirror: Path, path: Path) -> Path:
    """The registration `worktree add` just made for `path`, read before the run could touch the `.git`."""
    git_dir = _linked_git_dir(path)
    if git_dir.resolve().parent != (mirror / "worktrees").resolve():
        raise WorkspaceError(f"prepare {path}", f"{path / '.git'} names {git_dir}, outside {mirror}")
    return git_dir


def _checked_repo(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) != 2 or any(not _REPO_PART.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValueError(f"not an owner/name repository: {repo!r}")
    return repo
