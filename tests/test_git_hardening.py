"""The bot's own git calls against planted configuration, against real git: a run's model can write anything
in its worktree, so nothing it writes there — nor the worker's own dotfiles and environment — may make the
bot's git run a program, send the worker's secrets, or push somewhere else or something dangerous.

Every planted program is `touch <marker>`: the marker's absence proves it never ran."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.evaluation.service import git_diff
from bot.local import _git as local_git
from bot.validation.validator import clone_at
from bot.workspace import (
    FIXED_ENV,
    GIT_HOME,
    PASSED_ENV,
    ProtectedPathError,
    Workspace,
    WorkspaceError,
    checked_git_dir,
    git_environment,
    network_config,
    protected_paths,
    remote_scheme,
    run_git,
)
from tests.support import GIT_REPO as REPO
from tests.support import GIT_TOKEN as TOKEN
from tests.support import Prepare

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-SECRET",
    "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nSECRETKEY\n-----END RSA PRIVATE KEY-----",
    "REDIS_URL": "redis://:SECRETPASS@localhost:6379/0",
}


def git(cwd: Path, *args: str) -> str:
    """The test's own git, deaf to any HOME or environment a test plants for the bot's."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def seeded_repo(path: Path, files: dict[str, str]) -> Path:
    git(path.parent, "init", "-q", "--initial-branch=main", str(path))
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def make_remote(tmp_path: Path, files: dict[str, str], bare: Path | None = None) -> Path:
    bare = bare or tmp_path / "remotes" / "owner" / "repo.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    seed = seeded_repo(tmp_path / f"seed-{time.monotonic_ns()}", files)
    git(seed, "push", "-q", str(bare), "main")
    return bare


def plant(config: Path, key: str, value: str) -> None:
    git(config.parent, "config", "--file", str(config), key, value)


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "planted-program-ran"


@pytest.fixture
def evil_program(marker: Path) -> str:
    """A filter (or any other program) that leaves `marker` behind and passes its input through."""
    return f"touch {marker}; cat"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The remote's `main` carries `.gitattributes` naming a filter driver nobody defines (yet)."""
    return make_remote(tmp_path, {"README.md": "hello\n", ".gitattributes": "* filter=evil diff=evil\n"})


@pytest.fixture
def workspace(tmp_path: Path, remote: Path) -> Workspace:
    return Workspace(tmp_path / "data", f"file://{tmp_path}/remotes")


@pytest.fixture
def mirror_config(workspace: Workspace) -> Path:
    return workspace.mirror_path(REPO) / "config"


@pytest.fixture
def evil_remote(tmp_path: Path) -> Path:
    """Where a planted URL rewrite would send the push."""
    bare = tmp_path / "evil.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    return bare


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that records each call's arguments and whole environment, then runs git: what
    the bot's git processes really received."""
    real = shutil.which("git")
    calls, bin_dir = tmp_path / "calls", tmp_path / "probe-bin"
    calls.mkdir()
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(
        f'#!/bin/sh\ncall=$(mktemp "{calls}/call.XXXXXX")\nenv > "$call.env"\n'
        f'printf "%s\\n" "$@" > "$call.args"\nexec {real} "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def recorded(calls: Path) -> list[tuple[list[str], str]]:
    """(arguments, `env` output) of every call the probe saw."""
    return [
        (Path(f"{args.with_suffix('')}.args").read_text().splitlines(), args.read_text())
        for args in sorted(calls.glob("call.*.env"))
    ]


def env_names(env_text: str) -> set[str]:
    return {line.split("=", 1)[0] for line in env_text.splitlines() if "=" in line and line[0].isalpha()}


# --- protected paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows/ci.yml",
        ".github/workflows",
        ".github",
        ".GitHub/Workflows/ci.yml",
        ".gitattributes",
        "src/deep/.gitattributes",
        ".gitmodules",
        "vendor/.gitmodules",
        ".git/config",
        "sub/.git/hooks/pre-commit",
        "sub/.GIT/config",
        "sub/.git./config",
        "git~1/config",
    ],
)
def test_protected_paths_are_refused(path: str) -> None:
    assert protected_paths([path]) == [path]


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        ".github/ISSUE_TEMPLATE/bug.md",
        ".github/archon.yml",
        "docs/.github/workflows/example.yml",
        ".gitignore",
        "src/git.py",
        "notes.gitattributes",
        ".gitkeep",
    ],
)
def test_ordinary_paths_are_not_protected(path: str) -> None:
    assert protected_paths([path]) == []


def test_protected_paths_keeps_the_order_and_only_the_protected() -> None:
    paths = ["a.py", ".gitmodules", "b.py", ".github/workflows/x.yml"]
    assert protected_paths(paths) == [".gitmodules", ".github/workflows/x.yml"]


@pytest.mark.parametrize(
    "files",
    [
        {".github/workflows/ci.yml": "on: push\n"},
        {"src/.gitattributes": "* filter=evil\n"},
        {".gitmodules": '[submodule "x"]\n\tpath = x\n\turl = ../x\n'},
    ],
)
def test_a_change_to_a_protected_path_is_not_pushed(
    prepare: Prepare, workspace: Workspace, remote: Path, files: dict[str, str]
) -> None:
    worktree = prepare(workspace)
    for name, text in files.items():
        (worktree.path / name).parent.mkdir(parents=True, exist_ok=True)
        (worktree.path / name).write_text(text)
    (worktree.path / "README.md").write_text("changed\n")
    worktree.commit("Sneak it in")
    with pytest.raises(ProtectedPathError) as raised:
        worktree.push(TOKEN)
    assert raised.value.paths == list(files)
    assert "secrets" in str(raised.value) and next(iter(files)) in str(raised.value)
    assert "archon/r1" not in refs(remote)


def test_protected_files_already_on_the_base_do_not_block_other_changes(
    prepare: Prepare, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, {"README.md": "x\n", ".github/workflows/ci.yml": "on: push\n"})
    worktree = prepare(Workspace(tmp_path / "data", f"file://{tmp_path}/remotes"))
    (worktree.path / "README.md").write_text("y\n")
    sha = worktree.commit("Fine")
    worktree.push(TOKEN)
    assert git(remote, "rev-parse", "archon/r1") == sha


# --- the environment ------------------------------------------------------------------------------------


def test_git_environment_is_built_up_not_inherited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    for name in ("GIT_DIR", "GIT_CONFIG_PARAMETERS", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    env = git_environment({"GIT_AUTHOR_NAME": "A"})
    assert set(env) <= PASSED_ENV | set(FIXED_ENV) | {"GIT_AUTHOR_NAME", "LC_ALL"}
    assert env["HOME"] == GIT_HOME != str(tmp_path)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_ATTR_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["LC_ALL"] == "C.UTF-8" and env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["GIT_AUTHOR_NAME"] == "A" and env["PATH"] == os.environ["PATH"]


def test_git_processes_get_no_worker_secrets(
    prepare: Prepare, workspace: Workspace, probe: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "worker-home"))
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    worktree.diff()
    worktree.commit("Change")
    worktree.push(TOKEN)
    local_git(workspace.mirror_path(REPO), "rev-parse", "HEAD")
    git_diff(worktree.path, worktree.base_sha, "HEAD")

    calls = recorded(probe)
    subcommands = {arg for args, _ in calls for arg in args}
    assert {"init", "fetch", "worktree", "add", "commit", "push", "rev-parse", "diff"} <= subcommands
    for args, env_text in calls:
        names = env_names(env_text)
        assert not names & set(SECRETS), args
        assert "SECRET" not in env_text and str(tmp_path / "worker-home") not in env_text, args
        assert f"HOME={GIT_HOME}\n" in env_text
        assert "GIT_CONFIG_GLOBAL=/dev/null\n" in env_text and "GIT_CONFIG_NOSYSTEM=1\n" in env_text
        assert ("GIT_AUTHOR_NAME" in names) == ("commit" in args), args


def test_the_workers_dotfiles_and_git_variables_have_no_effect(
    prepare: Prepare,
    workspace: Workspace,
    remote: Path,
    evil_remote: Path,
    evil_program: str,
    marker: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    home = tmp_path / "worker-home"
    evil = home / ".gitconfig"
    home.mkdir()
    for key, value in {
        "filter.evil.clean": evil_program,
        "filter.evil.smudge": evil_program,
        "filter.evil.required": "true",
        "diff.evil.textconv": evil_program,
        "core.hooksPath": str(home),
        "alias.add": f"!{evil_program}",
        f"url.file://{evil_remote}.insteadOf": f"file://{tmp_path}/remotes/",
    }.items():
        plant(evil, key, value)
    (home / ".config" / "git").mkdir(parents=True)
    shutil.copy(evil, home / ".config" / "git" / "config")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(evil))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(evil))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "filter.evil.clean")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", evil_program)
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'filter.evil.clean'='{evil_program}'")

    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    assert "+changed" in worktree.diff()
    assert worktree.changed_files() == ["README.md"]
    sha = worktree.commit("Change")
    worktree.push(TOKEN)
    assert not marker.exists()
    assert git(remote, "rev-parse", "archon/r1") == sha
    assert refs(evil_remote) == ""


# --- the repository's own config --------------------------------------------------------------------------


def test_a_planted_smudge_filter_in_the_mirror_stops_prepare(
    prepare: Prepare, workspace: Workspace, mirror_config: Path, evil_program: str, marker: Path
) -> None:
    prepare(workspace)
    plant(mirror_config, "filter.evil.smudge", evil_program)
    with pytest.raises(WorkspaceError, match=r"filter\.evil\.smudge.*planted"):
        prepare(workspace, "r2", "archon/r2")
    assert not marker.exists()


@pytest.mark.parametrize("operation", ["diff", "changed_files", "commit"])
def test_a_planted_clean_filter_stops_staging(
    prepare: Prepare,
    workspace: Workspace,
    mirror_config: Path,
    evil_program: str,
    marker: Path,
    operation: str,
) -> None:
    worktree = prepare(workspace)
    plant(mirror_config, "filter.evil.clean", evil_program)
    (worktree.path / "README.md").write_text("changed\n")
    with pytest.raises(WorkspaceError, match=r"filter\.evil\.clean"):
        getattr(worktree, operation)(*(["Change"] if operation == "commit" else []))
    assert not marker.exists()


def test_a_planted_url_rewrite_stops_the_fetch(
    workspace: Workspace, mirror_config: Path, tmp_path: Path
) -> None:
    workspace.sync(REPO, token=None)
    evil = make_remote(tmp_path, {"evil.txt": "evil\n"}, tmp_path / "evil-code.git")
    evil_sha = git(evil, "rev-parse", "main")
    plant(mirror_config, f"url.file://{evil}.insteadOf", f"file://{tmp_path}/remotes/owner/repo.git")
    with pytest.raises(WorkspaceError, match=r"url\..*planted"):
        workspace.sync(REPO, token=None)
    mirror = workspace.mirror_path(REPO)
    assert subprocess.run(["git", "--git-dir", str(mirror), "cat-file", "-e", evil_sha]).returncode != 0


@pytest.mark.parametrize("key", ["insteadOf", "pushInsteadOf"])
def test_a_planted_url_rewrite_stops_the_push(
    prepare: Prepare,
    workspace: Workspace,
    mirror_config: Path,
    remote: Path,
    evil_remote: Path,
    tmp_path: Path,
    key: str,
) -> None:
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    worktree.commit("Change")
    plant(mirror_config, f"url.file://{evil_remote}.{key}", f"file://{tmp_path}/remotes/")
    with pytest.raises(WorkspaceError, match=r"url\..*planted"):
        worktree.push(TOKEN)
    assert refs(evil_remote) == ""
    assert "archon/r1" not in refs(remote)


@pytest.mark.parametrize(
    "key",
    [
        "include.path",
        "includeIf.gitdir:/.path",
        "credential.helper",
        "core.sshCommand",
        "core.gitProxy",
        "core.askPass",
        "core.hooksPath",
        "core.fsmonitor",
        "core.pager",
        "core.editor",
        "core.worktree",
        "http.proxy",
        "http.extraHeader",
        "remote.origin.url",
        "diff.evil.textconv",
        "diff.external",
        "merge.evil.driver",
        "gpg.program",
        "uploadpack.packObjectsHook",
        "receive.procReceiveRefs",
        "sequence.editor",
        "alias.st",
        "filter.evil.process",
        "submodule.recurse",
        "extensions.worktreeConfig",
    ],
)
def test_planted_settings_are_refused_by_name(
    prepare: Prepare, workspace: Workspace, mirror_config: Path, tmp_path: Path, key: str
) -> None:
    prepare(workspace)
    (tmp_path / "included.cfg").write_text("[gc]\n\tauto = 0\n")
    value = "true" if key.startswith("extensions.") else str(tmp_path / "included.cfg")
    plant(mirror_config, key, value)
    with pytest.raises(WorkspaceError) as raised:
        prepare(workspace, "r2", "archon/r2")
    message = str(raised.value)
    assert key.lower() in message.lower() and str(mirror_config) in message


def test_what_git_itself_writes_is_accepted(
    prepare: Prepare, workspace: Workspace, mirror_config: Path
) -> None:
    prepare(workspace)
    plant(mirror_config, "gc.auto", "0")
    plant(mirror_config, "core.logAllRefUpdates", "true")
    worktree = prepare(workspace, "r2", "archon/r2")
    (worktree.path / "README.md").write_text("changed\n")
    assert worktree.commit("Change")


# --- the worktree's `.git` ---------------------------------------------------------------------------------


def test_a_git_file_replaced_by_a_repository_is_refused(
    prepare: Prepare, workspace: Workspace, remote: Path, evil_program: str, marker: Path
) -> None:
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    worktree.commit("Before")
    dotgit = worktree.path / ".git"
    dotgit.unlink()
    git(worktree.path, "init", "-q")
    for key, value in {"filter.evil.clean": evil_program, "core.hooksPath": str(worktree.path)}.items():
        plant(dotgit / "config", key, value)
    (worktree.path / "hook").write_text(evil_program)
    for operation in (worktree.diff, worktree.changed_files, lambda: worktree.commit("x")):
        with pytest.raises(WorkspaceError, match="no longer the file git wrote"):
            operation()
    with pytest.raises(WorkspaceError, match="no longer the file git wrote"):
        worktree.push(TOKEN)
    assert not marker.exists()
    assert "archon/r1" not in refs(remote)
    worktree.release()
    workspace.remove(worktree)
    assert not worktree.path.exists()


def test_a_git_file_pointing_elsewhere_is_refused(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    other = prepare(workspace, "r2", "archon/r2")
    (worktree.path / ".git").write_text((other.path / ".git").read_text())
    with pytest.raises(WorkspaceError, match="no longer the file git wrote"):
        worktree.commit("x")


def test_a_replaced_git_file_is_never_read(prepare: Prepare, workspace: Workspace) -> None:
    worktree = prepare(workspace)
    real = worktree.head()
    (worktree.path / ".git").unlink()
    git(worktree.path, "init", "-q")
    (worktree.path / ".github" / "workflows").mkdir(parents=True)
    (worktree.path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    git(worktree.path, "add", "-A")
    git(worktree.path, "commit", "-q", "-m", "not the bot's")
    assert worktree.head() == real
    assert worktree.pushed_files() == []


def test_removing_a_worktree_never_touches_a_repository_its_git_file_names(
    prepare: Prepare, workspace: Workspace, tmp_path: Path
) -> None:
    victim = seeded_repo(tmp_path / "victim", {"a.txt": "a\n"})
    git(victim, "branch", "precious")
    git(victim, "worktree", "add", "-q", str(tmp_path / "gone"), "precious")
    shutil.rmtree(tmp_path / "gone")  # a stale registration, as people leave them
    worktree = prepare(workspace)
    (worktree.path / ".git").write_text(f"gitdir: {victim / '.git' / 'worktrees' / 'gone'}\n")
    worktree.release()
    workspace.remove_run("r1")
    assert not worktree.path.exists()
    assert git(victim, "branch", "--list", "precious") != ""


def test_checked_git_dir_refuses_a_registration_inside_the_worktree(
    prepare: Prepare, workspace: Workspace
) -> None:
    worktree = prepare(workspace)
    assert checked_git_dir(worktree.path) == worktree.git_dir
    fake = worktree.path / "fake"
    shutil.copytree(worktree.git_dir, fake)  # type: ignore[arg-type]
    (worktree.path / ".git").write_text(f"gitdir: {fake}\n")
    with pytest.raises(WorkspaceError, match="no longer the file git wrote"):
        checked_git_dir(worktree.path)
    with pytest.raises(WorkspaceError, match="no longer the file git wrote"):
        clone_at(worktree.path, worktree.base_sha, worktree.path.parent / "old-code")


# --- protocols --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("https://github.com/o/r.git", "https"),
        ("http://127.0.0.1:8000/o/r.git", "http"),
        ("file:///srv/git/r.git", "file"),
        ("/srv/git/r.git", "file"),
        ("relative/r.git", "file"),
    ],
)
def test_usable_remote_schemes(url: str, scheme: str) -> None:
    assert remote_scheme(url) == scheme
    assert f"protocol.{scheme}.allow=always" in network_config(url)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("ext::sh -c true", "ext"), ("fd::3", "fd"), ("git@github.com:o/r.git", "ssh"), ("git://h/r", "git")],
)
def test_other_remote_schemes_are_refused(url: str, scheme: str) -> None:
    with pytest.raises(WorkspaceError, match=f"unsupported remote URL scheme '{scheme}'"):
        remote_scheme(url)


def test_an_ext_remote_runs_nothing(
    prepare: Prepare, workspace: Workspace, tmp_path: Path, marker: Path
) -> None:
    url = f"ext::sh -c touch% {marker}"
    planted = Workspace(tmp_path / "other", "file:///nowhere", remotes={REPO: url})
    with pytest.raises(WorkspaceError, match="unsupported remote URL scheme 'ext'"):
        planted.prepare(REPO, "r1", "b1", token=TOKEN)
    assert not planted.mirror_path(REPO).exists()
    worktree = prepare(workspace)
    (worktree.path / "README.md").write_text("changed\n")
    worktree.commit("Change")
    with pytest.raises(WorkspaceError, match="unsupported remote URL scheme 'ext'"):
        dataclasses.replace(worktree, remote_url=url, _lock=None).push(TOKEN)
    assert not marker.exists()


def test_only_the_remotes_own_protocol_is_allowed(remote: Path, tmp_path: Path) -> None:
    url = f"file://{remote}"
    with pytest.raises(WorkspaceError, match="transport 'file' not allowed"):
        run_git(["ls-remote", url], cwd=tmp_path)
    with pytest.raises(WorkspaceError, match="transport 'file' not allowed"):
        run_git([*network_config("https://example.invalid/r.git"), "ls-remote", url], cwd=tmp_path)
    assert (
        "refs/heads/main" in run_git([*network_config(url), "ls-remote", url], cwd=tmp_path).stdout.decode()
    )


# --- programs named outside the checked config ----------------------------------------------------------


def hook_script(path: Path, marker: Path) -> Path:
    path.write_text(f"#!/bin/sh\ntouch {marker}\n")
    path.chmod(0o755)
    return path


def test_hooks_in_the_mirror_never_run(
    prepare: Prepare, workspace: Workspace, remote: Path, marker: Path
) -> None:
    prepare(workspace)
    hooks = workspace.mirror_path(REPO) / "hooks"
    for hook in ("post-checkout", "pre-commit", "post-commit", "reference-transaction", "pre-push"):
        hook_script(hooks / hook, marker)
    worktree = prepare(workspace, "r2", "archon/r2")
    (worktree.path / "README.md").write_text("changed\n")
    worktree.commit("Change")
    worktree.push(TOKEN)
    assert git(remote, "rev-parse", "archon/r2") == worktree.head()
    assert not marker.exists()


def test_run_git_runs_no_program_of_an_unchecked_repository(
    tmp_path: Path, evil_program: str, marker: Path
) -> None:
    """`archon-bot evaluate` reads the user's own checkout, whose config is not checked; the bot's command
    line still wins, even with a HOME that holds an attributes file."""
    repo = seeded_repo(tmp_path / "mine", {"a.txt": "one\n"})
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    program = hook_script(hooks / "program", marker)
    for hook in ("pre-commit", "post-commit", "reference-transaction", "post-index-change"):
        hook_script(hooks / hook, marker)
    config = repo / ".git" / "config"
    for key, value in {
        "core.hooksPath": str(hooks),
        "core.fsmonitor": str(program),
        "commit.gpgSign": "true",
        "tag.gpgSign": "true",
        "gpg.program": evil_program,
        "filter.evil.clean": evil_program,
    }.items():
        plant(config, key, value)
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "attributes").write_text("* filter=evil\n")
    env = {"HOME": str(home), "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@e"}
    env |= {"GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@e"}
    (repo / "a.txt").write_text("two\n")
    for args in (["status"], ["add", "-A"], ["commit", "-q", "-m", "two"], ["tag", "-a", "-m", "v1", "v1"]):
        run_git(args, cwd=repo, env=env)
    assert not marker.exists()


class AskingHandler(BaseHTTPRequestHandler):
    """Asks every request for credentials, as GitHub does for a repository the token cannot read."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def asking_remote() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AskingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/o/r.git"
    server.shutdown()
    server.server_close()


def test_network_calls_ask_no_credential_helper(asking_remote: str, tmp_path: Path, marker: Path) -> None:
    repo = seeded_repo(tmp_path / "mine", {"a.txt": "one\n"})
    plant(repo / ".git" / "config", "credential.helper", f"!f() {{ touch {marker}; }}; f")
    done = run_git([*network_config(asking_remote), "ls-remote", asking_remote], cwd=repo, check=False)
    assert done.returncode != 0
    assert not marker.exists()


# --- evaluation's git calls ---------------------------------------------------------------------------------


def test_git_diff_runs_no_diff_program_of_the_repository(
    tmp_path: Path, evil_program: str, marker: Path
) -> None:
    repo = seeded_repo(tmp_path / "mine", {"a.txt": "one\n", ".gitattributes": "* diff=evil\n"})
    base = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "two")
    plant(repo / ".git" / "config", "diff.external", evil_program)
    plant(repo / ".git" / "config", "diff.evil.textconv", evil_program)
    diff = git_diff(repo, base, "HEAD")
    assert "-one" in diff and "+two" in diff
    assert not marker.exists()


def test_the_old_code_checkout_is_made_without_the_repositorys_filters(
    tmp_path: Path, evil_program: str, marker: Path
) -> None:
    repo = seeded_repo(tmp_path / "mine", {"a.txt": "one\n", ".gitattributes": "* filter=evil\n"})
    plant(repo / ".git" / "config", "filter.evil.smudge", evil_program)
    plant(repo / ".git" / "config", "filter.evil.required", "true")
    checkout = clone_at(repo, "HEAD", tmp_path / "old-code")
    assert (checkout / "a.txt").read_text() == "one\n"
    assert not marker.exists()
