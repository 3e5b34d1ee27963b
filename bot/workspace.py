"""Git workspaces: a bare mirror per repository, a fresh worktree per run, pushes without a token on disk.

Layout under the data directory:

    mirrors/<owner>/<repo>.git    bare mirror; the remote's branches are fetched to `refs/remotes/origin/*`
    mirrors/<owner>/<repo>.lock   flock guarding the mirror's creation and fetches (never a whole run)
    worktrees/<run_id>/           the run's worktree, on the run's branch
    worktrees/<run_id>.lock       flock held by the live `Worktree`; free means the run has finished
    worktrees/<run_id>.failed     `mark_failed`'s time: `cleanup` keeps the worktree a while, for debugging

The remote's branches live under `refs/remotes/origin/`, not `refs/heads/`, so a fetch never collides with a
branch some worktree has checked out; `refs/remotes/origin/HEAD` records the remote's default branch.

Resuming: the code's state travels in the pushed branch. When the run's branch already exists on the remote,
`prepare` starts the worktree from it (`resume=True`, the default), so a retry on another machine continues
from what was pushed; `resume=False` starts afresh from the base and the next push replaces the branch.

Authentication: the installation token reaches git only through `GIT_CONFIG_*` environment variables of the
one subprocess that talks to an http(s) remote (`auth_env`) — never in a URL, a config file, or a message
(`redact` scrubs captured stderr). Every git call also disables hooks and fsmonitor, so nothing planted in a
worktree runs in a process that holds the token.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

GIT_TIMEOUT_S = 600.0
REMOTE_REFS = "refs/remotes/origin"
FETCH_REFSPEC = f"+refs/heads/*:{REMOTE_REFS}/*"
REDACTED = "***"
#: Given to every git call: no hooks or fsmonitor programs, whatever a worktree's config says.
SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
#: Given to calls that reach the remote: no credential helper asks for, or stores, anything.
NETWORK_CONFIG = ("-c", "credential.helper=")
#: Inherited `GIT_*` variables that configure the machine, not a repository; all others are dropped.
KEPT_GIT_ENV = frozenset(
    {
        "GIT_EXEC_PATH",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_SSL_NO_VERIFY",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
    }
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


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in KEPT_GIT_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra)
    return env


def _run(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    secret: str | None = None,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git <args>` in `cwd`; on a timeout the whole process group is killed."""
    command = ["git", *SAFE_CONFIG, *args]
    shown = redact(shlex.join(["git", *args]), secret)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=_environment(env or {}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise WorkspaceError(shown, f"timed out after {timeout:g}s") from None
    if check and process.returncode:
        raise WorkspaceError(shown, redact(err.decode(errors="replace"), secret), process.returncode)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _text(args: Sequence[str], *, cwd: Path) -> str:
    return _run(args, cwd=cwd).stdout.decode(errors="replace")


def _commit_of(cwd: Path, rev: str) -> str | None:
    """The commit `rev` names in the repository at `cwd`, or None."""
    if rev.startswith("-"):
        return None
    result = _run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=cwd, check=False)
    if result.returncode:
        return None
    return result.stdout.decode().strip() or None


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
    _lock: IO[str] | None = field(default=None, repr=False, compare=False)

    def head(self) -> str:
        return _text(["rev-parse", "HEAD"], cwd=self.path).strip()

    def diff(self) -> str:
        """Unified diff from `base_sha` to the working tree, new files included.

        Everything is staged first (`git add -A`, honouring .gitignore): the worktree belongs to the bot, so
        its index carries no meaning to preserve, and `commit` stages the same way.
        """
        self._stage()
        args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "-M", self.base_sha]
        return _text(args, cwd=self.path)

    def changed_files(self) -> list[str]:
        """Paths added, modified or deleted since `base_sha` (a rename lists both paths)."""
        self._stage()
        args = ["diff", "--cached", "--name-only", "--no-renames", "-z", self.base_sha]
        names = _run(args, cwd=self.path).stdout.split(b"\0")
        return [os.fsdecode(name) for name in names if name]

    def commit(
        self, message: str, author_name: str | None = None, author_email: str | None = None
    ) -> str | None:
        """Commit every change; the new HEAD, or None when there is nothing to commit."""
        self._stage()
        unchanged = _run(["diff", "--cached", "--quiet", "HEAD"], cwd=self.path, check=False)
        if unchanged.returncode == 0:
            return None
        name, email = author_name or self.identity.name, author_email or self.identity.email
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        args = ["-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m", message]
        _run(args, cwd=self.path, env=env)
        return self.head()

    def push(self, token: str | None) -> None:
        """Push HEAD to the run's branch on the remote, replacing it only if it is still what we last saw."""
        tracking = f"{REMOTE_REFS}/{self.branch}"
        expected = _commit_of(self.path, tracking) or ""  # empty: the branch must not exist yet
        head = self.head()
        lease = f"--force-with-lease=refs/heads/{self.branch}:{expected}"
        args = [*NETWORK_CONFIG, "push", "--quiet", "--no-verify", lease, self.remote_url]
        args.append(f"{head}:refs/heads/{self.branch}")
        _run(args, cwd=self.path, env=_remote_env(self.remote_url, token), secret=token)
        _run(["update-ref", tracking, head], cwd=self.path)

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
        _run(["add", "-A"], cwd=self.path)


class Workspace:
    """Mirrors and worktrees under `data_dir`; remotes at `{git_url}/{owner}/{repo}.git`."""

    def __init__(
        self,
        data_dir: Path,
        git_url: str,
        *,
        identity: GitIdentity = DEFAULT_IDENTITY,
        remotes: Mapping[str, str] | None = None,
    ) -> None:
        """`remotes`: explicit URLs (or local paths) for some repositories, e.g. `archon-bot run` on a
        checkout: `{"local/myproject": "/home/me/myproject"}`."""
        self.data_dir = Path(data_dir)
        self.git_url = git_url.rstrip("/")
        self.remotes = dict(remotes or {})
        self.identity = identity
        self.mirrors = self.data_dir / "mirrors"
        self.worktrees = self.data_dir / "worktrees"

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
    ) -> Worktree:
        """A fresh worktree for the run on `branch`, from `base` (a remote branch or a commit; default: the
        remote's default branch) — or from the remote `branch` itself when it exists and `resume` is set.

        An earlier worktree of the same run id (a retry on this machine) is replaced; one still held by a
        live run is refused.
        """
        path = self.worktree_path(run_id)
        self._check_branch(branch)
        lock = _try_lock(self._marker(run_id, ".lock"))
        if lock is None:
            raise WorkspaceError(f"prepare {run_id}", f"run {run_id} already has a worktree in use")
        try:
            self._discard(path, keep_lock=True)
            mirror = self.sync(repo, token=token)
            # Worktree registrations live in the mirror: adding one while another process fetches (or
            # removes one) makes git read a half-written `worktrees/<id>/HEAD`. The mirror lock orders them.
            with _locked(mirror.with_suffix(".lock")):
                start, base_sha, resumed = self._start(mirror, repo, branch, base, resume)
                args = ["worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), start]
                _run(args, cwd=mirror)
        except BaseException:
            lock.close()
            raise
        url = self.remote_url(repo)
        return Worktree(repo, path, branch, base_sha, url, resumed, self.identity, _lock=lock)

    def sync(self, repo: str, *, token: str | None) -> Path:
        """Create the repository's mirror on first use, else fetch what changed; return its path."""
        mirror, url = self.mirror_path(repo), self.remote_url(repo)
        env = _remote_env(url, token)
        with _locked(mirror.with_suffix(".lock")):
            if not (mirror / "HEAD").is_file():
                shutil.rmtree(mirror, ignore_errors=True)
                _run(["init", "--bare", "--quiet", str(mirror)], cwd=mirror.parent)
            remote_head = _run(
                [*NETWORK_CONFIG, "ls-remote", "--symref", url, "HEAD"], cwd=mirror, env=env, secret=token
            ).stdout.decode(errors="replace")
            fetch = [*NETWORK_CONFIG, "fetch", "--quiet", "--prune", "--no-tags", url, FETCH_REFSPEC]
            _run(fetch, cwd=mirror, env=env, secret=token)
            if match := re.search(r"^ref: refs/heads/(\S+)\tHEAD$", remote_head, re.MULTILINE):
                _run(["symbolic-ref", f"{REMOTE_REFS}/HEAD", f"{REMOTE_REFS}/{match[1]}"], cwd=mirror)
            _run(["worktree", "prune"], cwd=mirror)
        return mirror

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

    def _start(
        self, mirror: Path, repo: str, branch: str, base: str | None, resume: bool
    ) -> tuple[str, str, bool]:
        """Start commit, base commit, and whether the run resumes a pushed branch."""
        base_sha = self._base(mirror, repo, base)
        pushed = _commit_of(mirror, f"{REMOTE_REFS}/{branch}") if resume else None
        if pushed is None:
            return base_sha, base_sha, False
        fork = _run(["merge-base", pushed, base_sha], cwd=mirror, check=False).stdout.decode().strip()
        return pushed, fork or base_sha, True

    def _base(self, mirror: Path, repo: str, base: str | None) -> str:
        if base is None:
            found = _commit_of(mirror, f"{REMOTE_REFS}/HEAD")
            what = "the remote's default branch"
        else:
            found = _commit_of(mirror, f"{REMOTE_REFS}/{base}") or _commit_of(mirror, base)
            what = repr(base)
        if found is None:
            raise WorkspaceError(f"prepare {repo}", f"cannot find {what} in {repo}")
        return found

    def _check_branch(self, branch: str) -> None:
        self.worktrees.mkdir(parents=True, exist_ok=True)
        result = _run(["check-ref-format", "--branch", branch], cwd=self.worktrees, check=False)
        if result.returncode or result.stdout.decode().strip() != branch:
            raise ValueError(f"unusable branch name {branch!r}")

    def _discard(self, path: Path, branch: str | None = None, *, keep_lock: bool = False) -> None:
        """Remove the worktree at `path` (if any), its registration, local branch and markers. The caller
        holds the run lock; unless it keeps using it, the lock file is unlinked before the lock is let go."""
        registration = _registration(path)
        if registration is None:
            if path.exists() or path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        else:
            mirror, checked_out = registration
            with _locked(mirror.with_suffix(".lock")):  # see `prepare`
                _run(["worktree", "remove", "--force", "--force", str(path)], cwd=mirror, check=False)
                if path.exists() or path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                _run(["worktree", "prune"], cwd=mirror, check=False)
                for name in {branch, checked_out} - {None}:
                    _run(["branch", "-D", str(name)], cwd=mirror, check=False)
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


def _checked_repo(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) != 2 or any(not _REPO_PART.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValueError(f"not an owner/name repository: {repo!r}")
    return repo
