"""Fixtures: a private Redis per test session, settings, and the shared fake GitHub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bot.redis_server import RedisServer
from bot.settings import Settings
from tests.support import APP_ID, SECRET, app_key


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
