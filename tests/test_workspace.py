"""Workspaces against real git: local bare "remotes" reached through `file://`, and a tiny HTTP server that
records what git sends, to check the token travels only as a header."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.workspace import REDACTED, Workspace, WorkspaceError, Worktree, auth_env, redact
from tests.support import GIT_REPO as REPO
from tests.support import GIT_TOKEN as TOKEN
from tests.support import Prepare

IDENTITY = [
    "-c",
    "user.name=Test",
    "-c",
    "user.email=test@example.com",
    "-c",
    "commit.gpgsign=false",
]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def remote_commit(remote: Path, tmp_path: Path, path: str, text: str) -> str:
    """Commit a file to the remote's `main` through a scratch clone; the new commit's sha."""
    scratch = tmp_path / f"scratch-{time.monotonic_ns()}"
    git(tmp_path, "clone", "-q", str(remote), str(scratch))
    (scratch / path).write_text(text)
    git(scratch, "add", "-A")
    git(scratch, "commit", "-q", "-m", f"change {path}")
    git(scratch, "push", "-q", "origin", "HEAD:main")
    return git(scratch, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """`remotes/owner/repo.git`, a bare repository whose HEAD is `main` with one commit."""
    bare = tmp_path / "remotes" / "owner" / "repo.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("hello\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(bare), "main")
    return bare


@pytest.fixture
def git_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/remotes"


@pytest.fixture
def workspace(tmp_path: Path, git_url: str, remote: Path) -> Workspace:
    return Workspace(tmp_path / "data", git_url)


class RecordingHandler(BaseHTTPRequestHandler):
    """Answers every request with 404 and remembers the Authorization headers it saw."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_error(404)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_remote() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Handler", (RecordingHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_auth_env_is_a_basic_header_for_x_access_token() -> None:
    expected = base64.b64encode(b"x-access-token:" + TOKEN.encode()).decode()
    assert auth_env(TOKEN) == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {expected}",
    }


def test_redact_removes_the_token_and_its_header_form() -> None:
    header = auth_env(TOKEN)["GIT_CONFIG_VALUE_0"]
    text = redact(f"token {TOKEN} header {header}", TOKEN)
    assert TOKEN not in text
    assert header.split()[-1] not in text
    assert text == f"token {REDACTED} header Authorization: Basic {REDACTED}"


def test_first_prepare_creates_the_mirror_and_a_worktree(
    prepare: Prepare, workspace: Workspace, remote: Path
) -> None:
    worktree = prepare(workspace)
    mirror = workspace.mirror_path(REPO)
    assert mirror == workspace.data_dir / "mirrors" / "owner" / "repo.git"
    assert (mirror / "HEAD").is_file()
    assert worktree.path == workspace.data_dir / "worktrees" / "r1"
    assert (worktree.path / "README.md").read_text() == "hello\n"
    assert worktree.base_sha == git(remote, "rev-parse", "main") == worktree.head()
    assert git(worktree.path, "branch", "--show-current") == "archon/r1"
    assert not worktree.resumed


def test_second_prepare_fetches_new_commits(
    prepare: Prepare, workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    prepare(workspace, "r1", "b1")
    new = remote_commit(remote, tmp_path, "NEWS.md", "news\n")
    worktree = prepare(workspace, "r2", "b2")
    assert worktree.base_sha == new
    assert (worktree.path / "NEWS.md").read_text() == "news\n"


def test_prepare_follows_the_remote_head(
    prepare: Prepare, workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    prepare(workspace, "r1", "b1")
    git(remote, "branch", "trunk", "main")
    git(remote, "symbolic-ref", "HEAD", "refs/heads/trunk")
    remote_commit(remote, tmp_path, "only-main.txt", "x\n")
    worktree = prepare(workspace, "r2", "b2")
    assert worktree.base_sha == git(remote, "rev-parse", "trunk")
    assert not (worktree.path / "only-main.txt").exists()


def test_prepare_from_an_explicit_base(
    prepare: Prepare, workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    first = git(remote, "rev-parse", "main")
    remote_commit(remote, tmp_path, "later.txt", "x\n")
    assert prepare(workspace, "r1", "b1", base=first).head() == first
    git(remote, "branch", "release", first)
    assert prepare(workspace, "r2", "b2", base="release").base_sha == first
    with pytest.raises(WorkspaceError, match="cannot find"):
        prepare(workspace, "r3", "b3", base="no-such-branch")


def test_prepare_without_fetching_starts_from_the_snapshot_the_run_read(
    prepare: Prepare, workspace: Workspace, remote: Path, tmp_path: Path
) -> None:
    workspace.sync("owner/repo", token=None)
    files = workspace.snapshot("owner/repo")
    assert files.read_file("README.md") == "hello\n"
    remote_commit(remote, tmp_path, "README.md", "changed after the run read its files\n")
    worktree = prepare(workspace, "r1", "b1", base=files.commit, fetch=False)
    assert worktree.base_sha == files.commit and (worktree.path / "README.md").read_text() == "hello\n"
    (workspace.mirror_path("owner/repo") / "config").write_text("[core]\n\tfsmonitor = touch /tmp/pwned\n")
    with pytest.raises(WorkspaceError, match=r"core\.fsmonitor"):
        prepare(workspace, "r2", "b2", base=files.commit, fetch=False)  # no fetch, still checked


def test_concurrent_prepares_of_one_repository(prepare: Prepare, workspace: Workspace) -> None:
    def one(index: int) -> Worktree:
        return prepare(workspace, f"r{index}", f"archon/r{index}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        worktrees = list(pool.map(one, range(6)))
    assert len({w.path for w in worktrees}) == 6
    for worktree in worktrees:
        assert (worktree.path / "README.md").read_text() == "hello\n"
        assert git(worktree.path, "branch", "--show-current") == worktree.branch


def test_commit_and_push_create_the_branch_on_the_remote(
    prepare: Prepare, workspace: Workspace, remote: Path
) -> None:
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("hello, world\n")
    sha = worktree.commit("Say hello to the world")
    assert sha == worktree.head()
    worktree.push(TOKEN)
    assert git(remote, "rev-parse", "refs/heads/archon/r1") == sha
    assert git(remote, "show", f"{sha}:README.md") == "hello, world"
    assert git(remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha) == (
        "Archon Bot <archon-bot@users.noreply.github.com>|Archon Bot <archon-bot@users.noreply.github.com>"
    )
    (worktree.path / "second.txt").write_text("more\n")
    second = worktree.commit("More", author_name="Someone", author_email="someone@example.com")
    worktree.push(TOKEN)  # the lease is the branch as last pushed
    assert git(remote, "rev-parse", "refs/heads/archon/r1") == second
    assert git(remote, "log", "-1", "--format=%an <%ae>", second) == "Someone <someone@example.com>"


def test_push_refuses_to_overwrite_unseen_remote_work(
    prepare: Prepare, workspace: Workspace, remote: Path
) -> None:
    worktree = prepare(workspace)
    git(remote, "branch", "archon/r1", "main")  # someone else created the branch meanwhile
    (worktree.path / "a.txt").write_text("a\n")
    worktree.commit("A")
    with pytest.raises(WorkspaceError, match=r"stale info|rejected"):
        worktree.push(TOKEN)


def test_diff_and_changed_files_include_untracked_files(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    (worktree.path / "new_module.py").write_text("VALUE = 1\n")
    diff = worktree.diff()
    assert "+++ b/new_module.py" in diff
    assert "+VALUE = 1" in diff
    assert "-hello" in diff and "+changed" in diff
    assert worktree.changed_files() == ["README.md", "new_module.py"]
    worktree.commit("Change")
    assert worktree.changed_files() == ["README.md", "new_module.py"]  # still measured from base_sha


def test_nothing_to_commit_returns_none(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    assert worktree.commit("Nothing") is None
    assert worktree.diff() == ""
    assert worktree.changed_files() == []


def test_resume_continues_from_the_pushed_branch(
    prepare: Prepare, tmp_path: Path, git_url: str, remote: Path
) -> None:
    first = prepare(Workspace(tmp_path / "machine-a", git_url), "r1", "archon/issue-7")
    (first.path / "work.txt").write_text("step one\n")
    pushed = first.commit("Step one")
    first.push(TOKEN)
    remote_commit(remote, tmp_path, "NEWS.md", "meanwhile\n")

    again = prepare(Workspace(tmp_path / "machine-b", git_url), "r2", "archon/issue-7")
    assert again.resumed
    assert again.head() == pushed
    assert (again.path / "work.txt").read_text() == "step one\n"
    assert again.base_sha == first.base_sha  # where the branch forked: the diff is the whole branch
    assert again.changed_files() == ["work.txt"]
    (again.path / "work.txt").write_text("step two\n")
    again.commit("Step two")
    again.push(TOKEN)
    assert git(remote, "show", "archon/issue-7:work.txt") == "step two"

    fresh = prepare(Workspace(tmp_path / "machine-c", git_url), "r3", "archon/issue-7", resume=False)
    assert not fresh.resumed
    assert fresh.head() == git(remote, "rev-parse", "main")


def test_a_retried_run_gets_a_fresh_worktree(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    (worktree.path / "junk.txt").write_text("left over\n")
    workspace.mark_failed(worktree)
    retry = prepare(workspace)
    assert retry.path == worktree.path
    assert not (retry.path / "junk.txt").exists()


def test_a_run_in_use_is_not_prepared_twice_nor_removed(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    with pytest.raises(WorkspaceError, match="in use"):
        prepare(workspace, branch="other")
    with pytest.raises(WorkspaceError, match="in use"):
        workspace.remove_run("r1")
    worktree.release()
    workspace.remove_run("r1")
    assert not worktree.path.exists()


def test_remove_deletes_worktree_registration_and_local_branch(
    prepare: Prepare, workspace: Workspace
) -> None:
    worktree = prepare(workspace)
    (worktree.path / "dirty.txt").write_text("untracked\n")
    workspace.remove(worktree)
    mirror = workspace.mirror_path(REPO)
    assert not worktree.path.exists()
    assert str(worktree.path) not in git(mirror, "worktree", "list")
    assert git(mirror, "branch", "--list", "archon/r1") == ""
    assert list(workspace.worktrees.iterdir()) == []


def test_cleanup_keeps_live_and_recently_failed_worktrees(prepare: Prepare, workspace: Workspace) -> None:
    live = prepare(workspace, "live", "b-live")
    failed = prepare(workspace, "failed", "b-failed")
    finished = prepare(workspace, "finished", "b-finished")
    workspace.mark_failed(failed)
    finished.release()

    assert workspace.cleanup(keep_failed_s=60) == ["finished"]
    assert live.path.exists() and failed.path.exists() and not finished.path.exists()

    time.sleep(0.05)
    assert workspace.cleanup(keep_failed_s=0.01) == ["failed"]
    assert live.path.exists() and not failed.path.exists()
    assert sorted(p.name for p in workspace.worktrees.iterdir()) == ["live", "live.lock"]


def test_the_token_is_never_written_to_disk(prepare: Prepare, workspace: Workspace, tmp_path: Path) -> None:
    worktree = prepare(workspace)
    (worktree.path / "a.txt").write_text("a\n")
    worktree.commit("A")
    worktree.push(TOKEN)
    config = git(worktree.path, "rev-parse", "--path-format=absolute", "--git-path", "config")
    assert Path(config) == workspace.mirror_path(REPO) / "config"
    for path in workspace.data_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_http_remotes_get_the_token_as_a_header_only(
    prepare: Prepare, tmp_path: Path, http_remote: tuple[str, list[str | None]]
) -> None:
    url, seen = http_remote
    workspace = Workspace(tmp_path / "data", url)
    with pytest.raises(WorkspaceError) as raised:
        workspace.prepare(REPO, "r1", "b1", token=TOKEN)
    expected = auth_env(TOKEN)["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: ")
    assert seen and set(seen) == {expected}
    assert url in str(raised.value)  # the URL, without credentials
    assert TOKEN not in str(raised.value) and expected not in str(raised.value)
    assert TOKEN not in (workspace.mirror_path(REPO) / "config").read_text()


def test_a_failed_push_does_not_reveal_the_token(
    prepare: Prepare, workspace: Workspace, http_remote: tuple[str, list[str | None]]
) -> None:
    worktree = prepare(workspace)
    (worktree.path / "a.txt").write_text("a\n")
    worktree.commit("A")
    url, seen = http_remote
    for remote_url in ("https://127.0.0.1:9/x.git", f"{url}/x.git"):
        elsewhere = dataclasses.replace(worktree, remote_url=remote_url, _lock=None)
        with pytest.raises(WorkspaceError) as raised:
            elsewhere.push(TOKEN)
        message = str(raised.value)
        assert "push" in message and remote_url in message
        assert TOKEN not in message
        assert auth_env(TOKEN)["GIT_CONFIG_VALUE_0"].split()[-1] not in message
    assert seen  # git did send the (redacted-from-errors) header to the http remote


def test_bad_names_are_refused(prepare: Prepare, workspace: Workspace) -> None:
    for repo in ("owner", "owner/../x", "a/b/c"):
        with pytest.raises(ValueError):
            workspace.prepare(repo, "r1", "b1", token=None)
    with pytest.raises(ValueError):
        workspace.prepare(REPO, "../escape", "b1", token=None)
    for branch in ("-x", "a..b", "has space"):
        with pytest.raises(ValueError):
            workspace.prepare(REPO, "r1", branch, token=None)
