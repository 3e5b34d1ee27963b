"""`prepare(fetch=True)` overlaps the freshness check (`ls-remote`) with the checkout of the mirror's current
commit. These tests show the overlap never costs freshness: whatever was pushed before the call — to the
default branch, to the run's own branch, a new branch, a deletion — is in the worktree it returns, on a full
and on a blobless mirror, and a refresh that died does not leave the callers it was to serve stale. The
remote is real git over smart HTTP (`git http-backend`, from `tests/test_workspace_sharing.py`), so each
fetch is counted at the remote."""

from __future__ import annotations

import fcntl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.workspace import FetchStamp, Workspace, Worktree, _read_stamp, _write_stamp
from tests.test_workspace import git, remote_commit
from tests.test_workspace_sharing import HEADER, REPO, TOKEN, Remote, blocked_on, make_remote, serve


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    yield from serve(tmp_path, make_remote(tmp_path, allow_filter=True))


def clean(worktree: Worktree) -> bool:
    """Nothing staged, changed or untracked: the checkout is exactly its HEAD commit."""
    return git(worktree.path, "status", "--porcelain", "--untracked-files=all") == ""


def push_from_scratch(remote: Remote, tmp_path: Path, branch: str, change: dict[str, str | None]) -> str:
    """One commit on `branch` of the remote (created from `main` when new): files written, or removed
    where the text is None. The new commit's sha."""
    scratch = tmp_path / f"scratch-{time.monotonic_ns()}"
    git(tmp_path, "clone", "-q", str(remote.bare), str(scratch))
    git(
        scratch,
        "checkout",
        "-q",
        "-B",
        branch,
        f"origin/{branch}" if _has(scratch, branch) else "origin/main",
    )
    for path, text in change.items():
        if text is None:
            git(scratch, "rm", "-q", path)
        else:
            (scratch / path).parent.mkdir(parents=True, exist_ok=True)
            (scratch / path).write_text(text)
    git(scratch, "add", "-A")
    git(scratch, "commit", "-q", "-m", f"change on {branch}")
    git(scratch, "push", "-q", "origin", f"HEAD:{branch}")
    return git(scratch, "rev-parse", "HEAD")


def _has(scratch: Path, branch: str) -> bool:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"origin/{branch}"], cwd=scratch, check=False
    )
    return found.returncode == 0


def test_a_push_between_two_runs_is_in_the_second_runs_worktree(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    first = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    pushed = push_from_scratch(
        remote, tmp_path, "main", {"README.md": "pushed\n", "src/m1.py": None, "src/new.py": "NEW = 1\n"}
    )
    before = remote.requests.fetches()
    second = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN)
    # checked out at the mirror's old commit while `ls-remote` ran; then fetched and moved to the push
    assert remote.requests.fetches() == before + 1 and first.head() != pushed
    assert second.head() == second.base_sha == second.base_tip == pushed
    assert git(second.path, "rev-parse", "archon/r2") == pushed
    assert (second.path / "README.md").read_text() == "pushed\n"
    assert not (second.path / "src" / "m1.py").exists() and (second.path / "src" / "new.py").is_file()
    assert clean(second) and second.changed_files() == []
    assert (first.path / "README.md").read_text() == "hello\n"  # the earlier run's worktree is untouched


def test_with_nothing_pushed_the_overlapped_worktree_is_the_answer(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    first = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    before = remote.requests.fetches()
    second = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN)
    assert remote.requests.fetches() == before and workspace.refreshes == 2  # listed, nothing to fetch
    assert second.head() == first.head() == second.base_tip and clean(second)


def test_a_push_to_the_runs_own_branch_is_resumed_from(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    worktree = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    (worktree.path / "src" / "m2.py").write_text("VALUE = 'run'\n")
    worktree.commit("Run's work")
    worktree.push(TOKEN)
    workspace.remove(worktree)
    someone = push_from_scratch(remote, tmp_path, "archon/r1", {"src/m3.py": "VALUE = 'someone'\n"})
    resumed = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    assert resumed.resumed and resumed.head() == someone and clean(resumed)
    assert (resumed.path / "src" / "m3.py").read_text() == "VALUE = 'someone'\n"
    assert sorted(resumed.changed_files()) == ["src/m2.py", "src/m3.py"]  # against the fork point
    assert resumed.base_tip == git(remote.bare, "rev-parse", "main")


def test_a_base_branch_pushed_just_before_the_run_is_found(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN).release()
    release = push_from_scratch(remote, tmp_path, "release", {"RELEASE": "1.0\n"})
    worktree = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN, base="release")
    assert worktree.head() == worktree.base_sha == release and (worktree.path / "RELEASE").is_file()


def test_a_blobless_mirror_moves_to_a_push_with_the_token(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url, partial=True)
    worktree = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    (worktree.path / "src" / "m4.py").write_text("VALUE = 'run'\n")
    worktree.commit("Run's work")
    worktree.push(TOKEN)
    workspace.remove(worktree)
    pushed = push_from_scratch(remote, tmp_path, "archon/r1", {"src/m5.py": "VALUE = 'new blob'\n"})
    resumed = workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN)
    assert resumed.head() == pushed and resumed.lazy and clean(resumed)
    assert (resumed.path / "src" / "m5.py").read_text() == "VALUE = 'new blob'\n"
    # every request, the lazy fetches of the moved checkout included, carried the token as a header
    assert remote.requests.authorizations() == {HEADER}
    mirror = workspace.mirror_path(REPO)
    assert TOKEN not in (mirror / "config").read_text() and remote.url not in (mirror / "config").read_text()


def test_a_refresh_that_died_does_not_leave_its_waiters_stale(remote: Remote, tmp_path: Path) -> None:
    """A caller that asked, then found a refresh begun after its ask (as a dead worker's would be: started,
    never finished), waits for it; when it never lands, the caller refreshes itself and sees the push."""
    data = tmp_path / "data"
    mirror = Workspace(data, remote.url).sync(REPO, token=TOKEN)
    pushed = remote_commit(remote.bare, tmp_path, "README.md", "pushed before the run asked\n")
    workspace, result = Workspace(data, remote.url), []
    stamp = mirror.with_suffix(".fetch")
    with open(mirror.with_suffix(".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(
            target=lambda: result.append(workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN))
        )
        thread.start()  # it reads its ticket, then waits for the mirror's lock
        while blocked_on(mirror.with_suffix(".lock")) < 1:
            time.sleep(0.02)
        state = _read_stamp(stamp)
        _write_stamp(stamp, FetchStamp(state.started + 1, state.finished))  # a refresh began, then died
        fcntl.flock(held, fcntl.LOCK_UN)
    thread.join(timeout=120)
    (worktree,) = result
    assert (
        worktree.head() == pushed
        and (worktree.path / "README.md").read_text() == "pushed before the run asked\n"
    )
    assert workspace.refreshes == 1 and workspace.fetches == 1
    assert _read_stamp(stamp).finished == _read_stamp(stamp).started  # its own refresh finished the count
    worktree.release()


def test_a_base_given_as_an_expression_is_resolved_by_git(remote: Remote, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "data", remote.url)
    workspace.prepare(REPO, "r1", "archon/r1", token=TOKEN).release()
    parent = git(remote.bare, "rev-parse", "main~1")
    worktree = workspace.prepare(REPO, "r2", "archon/r2", token=TOKEN, base="main~1")
    assert worktree.head() == worktree.base_tip == parent and clean(worktree)
