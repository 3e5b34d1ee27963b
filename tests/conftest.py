"""Fixtures: a private Redis per test session, settings, and the shared fake GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.fakes.github import FakeGitHub
from bot.redis_server import RedisServer
from bot.sample_repo import FILES, ISSUE_BODY, ISSUE_TITLE, create_bare_remote, write_models_file
from bot.settings import Settings
from bot.workspace import Workspace, Worktree
from tests.support import (
    APP_ID,
    GIT_REPO,
    GIT_TOKEN,
    INSTALLATION_ID,
    OPENAPI,
    REPO,
    SECRET,
    Prepare,
    app_key,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Our own redis-server on a free port: flushing it between tests harms nobody."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path) -> Settings:
    private, _ = app_key()
    return Settings(
        _env_file=None,
        github_app_id=APP_ID,
        github_private_key=private,
        github_webhook_secret=SECRET,
        redis_url=redis_server.url,
        archon_data_dir=tmp_path / "data",
    )


@pytest.fixture(scope="session")
def github_server() -> Iterator[FakeGitHub]:
    """One fake GitHub for the session; `github` resets it for each test."""
    with FakeGitHub(APP_ID, app_key()[1], openapi=OPENAPI) as server:
        yield server


@pytest.fixture
def github(github_server: FakeGitHub) -> Iterator[FakeGitHub]:
    """The fake GitHub with the example payloads' repository installed. Every request the bot made
    during the test must match GitHub's OpenAPI description."""
    github_server.reset()
    github_server.add_repo(
        REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "maintain", "reader": "read"}
    )
    github_server.add_issue(REPO, 1, title="Spelling error in the README file", author="Codertocat")
    yield github_server
    assert github_server.violations == []


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, github: FakeGitHub, redis_server: RedisServer, tmp_path):
    """The environment a worker process gets: jobs read their settings from it, as in production."""
    private, _ = app_key()
    env = {
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_PRIVATE_KEY": private,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": github.api_url,
        "GITHUB_WRITE_INTERVAL": "0",
        "GITHUB_REQUEST_INTERVAL": "0",
        "REDIS_URL": redis_server.url,
        "ARCHON_DATA_DIR": str(tmp_path / "data"),
        "ARCHON_ENV_FILE": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def remote(tmp_path: Path, github, worker_env, monkeypatch) -> Path:
    remotes = tmp_path / "remotes"
    bare = create_bare_remote(remotes, REPO)
    github.add_repo(
        REPO,
        installation=INSTALLATION_ID,
        collaborators={"maintainer": "maintain"},
        files={".github/archon.yml": FILES[".github/archon.yml"]},
        git_dir=bare,
    )
    github.add_issue(REPO, 1, title=ISSUE_TITLE, body=ISSUE_BODY, author="Codertocat")
    monkeypatch.setenv("GITHUB_GIT_URL", f"file://{remotes}")
    monkeypatch.setenv("ARCHON_MODELS_FILE", str(write_models_file(tmp_path / "models.yml")))
    return bare


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory outside every place the sandbox hides anyway (/tmp, HOME, /run, the working
    directory), so only the sandbox's `hidden` list can keep what is in it out of sight."""
    import shutil
    import uuid

    base = Path("/opt") / f"archon-test-{uuid.uuid4().hex[:8]}"
    try:
        base.mkdir(parents=True)
    except OSError:
        pytest.skip("cannot create a directory under /opt here")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def prepare() -> Iterator[Prepare]:
    """`workspace.prepare` for GIT_REPO with GIT_TOKEN; every worktree is released when the test ends."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def prepare(workspace: Workspace, run_id: str = "r1", branch: str = "archon/r1", **kw) -> Worktree:
            return stack.enter_context(workspace.prepare(GIT_REPO, run_id, branch, token=GIT_TOKEN, **kw))

        yield prepare


@pytest.fixture(scope="session")
def real_projects(tmp_path_factory: pytest.TempPathFactory):
    """Real open-source projects as git repositories (`tests/projects.py`): `real_projects("toolz")` builds
    one the first time it is asked for in the session and returns its `RealProject` (repo, base, fix…)."""
    from tests.projects import RealProjects

    return RealProjects(tmp_path_factory.mktemp("real-projects"))


@pytest.fixture
def slow_implement(tmp_path: Path, monkeypatch) -> Path:
    """The implementing model starts a long command, so the run is reliably mid-node."""
    folder = tmp_path / "slow-scripts"
    folder.mkdir()
    script = folder / "demo-kimi-implement.jsonl"
    script.write_text('{"tool_calls": [{"name": "run", "arguments": {"command": "sleep 60"}}]}\n')
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(folder))
    return script
