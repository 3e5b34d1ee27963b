"""Sharing a mirror between runs: single-flight refreshes across processes, no stale reuse, and blobless
partial mirrors. The remote is served over smart HTTP by `git http-backend` on loopback, so every request
git makes — and the Authorization header it carries — is counted at the remote, not inside the bot."""

from __future__ import annotations

import base64
import fcntl
import gzip
import multiprocessing
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.workspace import Workspace, WorkspaceError
from tests.test_workspace import git, remote_commit

REPO = "owner/repo"
TOKEN = "ghs_sharingtoken0123456789"
HEADER = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


@dataclass
class Requests:
    """What the git server saw: (protocol v2 command or the path, authorization) per request."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fetches(self) -> int:
        """Fetches (lazy ones too): protocol v2 `command=fetch` requests; `ls-remote` only sends `ls-refs`."""
        with self.lock:
            return sum(1 for command, _ in self.seen if command == "fetch")

    def authorizations(self) -> set[str | None]:
        with self.lock:
            return {auth for _, auth in self.seen}


class GitHandler(BaseHTTPRequestHandler):
    """Smart HTTP through `git http-backend` (CGI), recording each request."""

    root: Path
    requests: Requests

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.requests.lock:
            self.requests.seen.append(
                (_command(body, self.headers) or path, self.headers.get("Authorization"))
            )
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "x-access-token",  # lets http-backend take pushes
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
        self.send_response(int(headers.pop("Status", "200").split()[0]))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def _command(body: bytes, headers: Message) -> str | None:
    """The protocol v2 command a POST carries (`ls-refs`, `fetch`), from its first pkt-line."""
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    found = re.search(rb"command=([a-z-]+)", body[:64])
    return found[1].decode() if found else None


@dataclass(frozen=True)
class Remote:
    url: str
    bare: Path
    requests: Requests


def make_remote(tmp_path: Path, *, allow_filter: bool) -> Path:
    bare = tmp_path / "remotes" / "owner" / "repo.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    git(bare, "config", "uploadpack.allowFilter", str(allow_filter).lower())
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("hello\n")
    (seed / "src").mkdir()
    for index in range(20):
        (seed / "src" / f"m{index}.py").write_text(f"VALUE = {index}\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    (seed / "src" / "m0.py").write_text("VALUE = 'old history'\n")
    git(seed, "commit", "-q", "-am", "second")
    (seed / "src" / "m0.py").write_text("VALUE = 0\n")
    git(seed, "commit", "-q", "-am", "third")
    git(seed, "push", "-q", str(bare), "main")
    return bare


def serve(tmp_path: Path, bare: Path) -> Iterator[Remote]:
    requests = Requests()
    handler = type("Handler", (GitHandler,), {"root": tmp_path / "remotes", "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Remote(f"http://127.0.0.1:{server.server_address[1]}", bare, requests)
    server.shutdown()
    server.server_close()


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    yield from serve(tmp_path, make_remote(tmp_path, allow_filter=True))


@pytest.fixture
def refusing_remote(tmp_path: Path) -> Iterator[Remote]:
    yield from serve(tmp_path, make_remote(tmp_path, allow_filter=False))


def _prepare_in_process(data_dir: str, url: str, run_id: str) -> tuple[str, str, int, int]:
    """One run's acquisition in its own process (as RQ work-horses are): path, HEAD, refreshes, fetches."""
    workspace = Workspace(Path(data_dir), url)
    worktree = workspace.prepare(REPO, run_id, f"archon/{run_id}", token=TOKEN)
    head = git(worktree.path, "rev-parse", "HEAD")
    worktree.release()
    return str(worktree.path), head, workspace.refreshes, workspace.fetches


def blocked_on(lock_file: Path) -> int:
    """How many processes wait for the flock on `lock_file` (the `->` lines of /proc/locks)."""
    inode = f":{os.stat(lock_file).st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and inode in line)


def test_runs_waiting_on_one_refresh_in_several_processes_share_it(remote: Remote, tmp_path: Path) -> None:
    data = tmp_path / "data"
    mirror = Workspace(data, remote.url).sync(REPO, token=TOKEN)  # later runs only refresh
    pushed = remote_commit(remote.bare, tmp_path, "README.md", "pushed before the runs start\n")
    before = remote.requests.fetches()
    context = multiprocessing.get_context("spawn")
    with open(mirror.with_suffix(".lock"), "a") as held, context.Pool(6) as pool:
        fcntl.flock(held, fcntl.LOCK_EX)  # as if a refresh were under way: every run asks, then waits
        pending = [pool.apply_async(_prepare_in_process, (str(data), remote.url, f"r{i}")) for i in range(6)]
        while blocked_on(mirror.with_suffix(".lock")) < 6:
            time.sleep(0.05)
        fcntl.flock(held, fcntl.LOCK_UN)
        results = [job.get(timeout=120) for job in pending]
    assert {head for _, head, _, _ in results} == {pushed}
    assert len({path for path, *_ in results}) == 6
    for path, *_ in results:
        assert Path(path, "README.md").read_text() == "pushed before the runs start\n"
    # all six asked before the first of them refreshed: that one refresh (one fetch) serves the rest
    assert sum(refreshes for _, _, refreshes, _ in results) == 1
    assert sum(fetches for *_, fetches in results) == 1 == remote.requests.fetches() - before


def test_runs_starting_together_fetch_a_push_once(remote: Remote, tmp_path: Path) -> None:
    data = tmp_path / "data"
    Workspace(data, remote.url).sync(REPO, token=TOKEN)
    pushed = remote_commit(remote.bare, tmp_path, "README.md", "pushed before the runs start\n")
    before = remote.requests.fetches()
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.starmap(_prepare_in_process, [(str(data), remote.url, f"r{i}") for i in range(6)])
    assert {head for _, head, _, _ in results} == {pushed}
    # however the six interleave, a refresh that finds every branch at its sha fetches nothing
    assert remote.requests.fetches() - before == 1


def test_a_run_after_a_finished_refresh_still_sees_a_new_push(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    first = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    pushed = remote_commit(remote.bare, tmp_path, "README.md", "pushed after the first run\n")
    second = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN)
    assert first.base_sha != pushed and second.base_sha == pushed
    assert (second.path / "README.md").read_text() == "pushed after the first run\n"


def test_a_later_run_with_nothing_new_does_not_fetch(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN).release()
    before = remote.requests.fetches()
    worktree = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN)
    assert remote.requests.fetches() == before and workspace.fetches == 1
    assert workspace.refreshes == 2  # it did list the remote's branches: a push could have come
    assert (worktree.path / "README.md").read_text() == "hello\n"


def missing_objects(mirror: Path) -> int:
    listing = git(mirror, "rev-list", "--objects", "--missing=print", "--all")
    return sum(1 for line in listing.splitlines() if line.startswith("?"))


def test_a_partial_mirror_works_end_to_end(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url, partial=True)
    mirror = workspace.sync(REPO, token=TOKEN)
    assert missing_objects(mirror) > 0  # blobless: the old versions of src/m0.py are not there
    files = workspace.snapshot(REPO)
    assert files.read_file("src/m3.py") == "VALUE = 3\n"
    worktree = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN, base=files.commit, fetch=False)
    assert (worktree.path / "src" / "m0.py").read_text() == "VALUE = 0\n"
    old = Workspace(tmp_path / "data", remote.url, partial=True).snapshot(REPO, "main~1", token=TOKEN)
    assert old.read_file("src/m0.py") == "VALUE = 'old history'\n"  # fetched lazily, at that sha
    (worktree.path / "src" / "m1.py").write_text("VALUE = 'changed'\n")
    assert "changed" in worktree.diff()
    worktree.commit("Change m1")
    worktree.push(TOKEN)
    assert git(remote.bare, "show", "archon/r1:src/m1.py") == "VALUE = 'changed'"
    # every request, the lazy fetches included, carried the token as a header, none without it
    assert remote.requests.authorizations() == {HEADER}
    assert TOKEN not in (mirror / "config").read_text() and remote.url not in (mirror / "config").read_text()


def test_a_resumed_run_on_a_partial_mirror_diffs_against_its_fork_point(
    remote: Remote, tmp_path: Path
) -> None:
    workspace = Workspace(tmp_path / "data", remote.url, partial=True)
    worktree = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    (worktree.path / "src" / "m2.py").write_text("VALUE = 'branch'\n")
    worktree.commit("Branch work")
    worktree.push(TOKEN)
    workspace.remove(worktree)
    remote_commit(remote.bare, tmp_path, "src/m2.py", "VALUE = 'main moved'\n")
    fresh = Workspace(tmp_path / "fresh", remote.url, partial=True)
    resumed = fresh.prepare(REPO, "r2", "archon/r1", token=TOKEN)
    assert resumed.resumed and (resumed.path / "src" / "m2.py").read_text() == "VALUE = 'branch'\n"
    assert resumed.changed_files() == ["src/m2.py"] and "VALUE = 'branch'" in resumed.diff()


def test_hydrate_fetches_a_commits_blobs_for_readers_without_the_remote(
    remote: Remote, tmp_path: Path
) -> None:
    workspace = Workspace(tmp_path / "data", remote.url, partial=True)
    mirror = workspace.sync(REPO, token=TOKEN)
    with pytest.raises(subprocess.CalledProcessError):
        git(mirror, "show", "main~1:src/m0.py")  # no remote named: a plain reader cannot fetch
    workspace.hydrate(REPO, ["refs/remotes/origin/main~1"], token=TOKEN)
    assert git(mirror, "show", "refs/remotes/origin/main~1:src/m0.py") == "VALUE = 'old history'"


def test_a_remote_that_refuses_filters_gives_a_full_mirror(refusing_remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", refusing_remote.url, partial=True)
    mirror = workspace.sync(REPO, token=TOKEN)
    assert missing_objects(mirror) == 0 and "promisor" not in (mirror / "config").read_text()
    worktree = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN, fetch=False)
    assert worktree.lazy == () and (worktree.path / "README.md").read_text() == "hello\n"


def test_a_planted_promisor_value_is_refused(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url, partial=True)
    mirror = workspace.sync(REPO, token=TOKEN)
    git(mirror, "config", "remote.origin.partialclonefilter", "blob:limit=1g")
    with pytest.raises(WorkspaceError, match=r"partialclonefilter"):
        workspace.sync(REPO, token=TOKEN)
