"""Shared fixtures: one private redis-server per test session, flushed before each test."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.helpers import RedisServer

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def test_env(redis_url: str) -> dict[str, str]:
    """Environment for Lookout subprocesses of this test: its Redis and a unique key prefix."""
    return {"REDIS_URL": redis_url, "KEY_PREFIX": f"t{os.getpid()}n{next(_prefixes)}"}


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(test_env, env_file=None)


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
