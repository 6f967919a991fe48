"""Shared fixtures: one private redis-server per test session, flushed before each test."""

from __future__ import annotations

import gc
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.helpers import RedisServer

if TYPE_CHECKING:
    from tests.openai_server import ServeProcess

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


@pytest.fixture(scope="session")
def openai_hub() -> Path:
    """A Hugging Face cache folder holding two tiny random-weight VLMs (ENGINE=openai tests)."""
    from tests.openai_server import MODEL_A, MODEL_B, build_checkpoints

    return build_checkpoints(MODEL_A, MODEL_B)


@pytest.fixture(scope="session")
def openai_server(openai_hub: Path) -> Iterator[ServeProcess]:
    """A real OpenAI-compatible server (`transformers serve`) requiring OPENAI_TEST_KEY."""
    from tests.openai_server import MODEL_A, OPENAI_TEST_KEY, ServeProcess

    proc = ServeProcess(openai_hub, key=OPENAI_TEST_KEY).start()
    try:
        proc.warm(MODEL_A)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def livekit_handles_released(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """After a LiveKit SDK test: free its native objects inside its own event loop.

    A log record with a traceback (an asyncio "exception never retrieved", a session that
    failed) keeps the frames' locals alive — tracks, streams, sources — until pytest drops the
    records after teardown, outside any loop. Once, under load, such a late drop of a native
    handle never returned (the SDK's audio capture thread spinning). The bridge process drops
    them inside its loop; so do these tests: tracebacks are rendered to text, then collected.
    """
    yield
    formatter = logging.Formatter()
    for when in ("setup", "call"):
        for record in caplog.get_records(when):
            if record.exc_info:
                record.exc_text = record.exc_text or formatter.formatException(record.exc_info)
                record.exc_info = None
    gc.collect()
