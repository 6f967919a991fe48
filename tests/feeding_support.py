"""Fixtures for tests of sources fed by real processes: a clip, a `lookout api`, feeders.

A test module imports the fixtures it uses (`clip_fixture` provides the fixture `clip`, and so
on: the test's parameters then shadow no import) and sets `PREFIX`, the key prefix its
processes share; `env` reads it from the module, so each module's api and producers keep to
their own keys.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LookoutProcess, RedisServer
from tests.media import have_ffmpeg, make_mp4
from tests.test_api_support import ApiServer

CAPTURE_ENV = {"CLAIM_TTL": "2", "HEARTBEAT_TTL": "3", "DISPLAY_FPS": "5", "LOOP_FILES": "true"}


@pytest.fixture(scope="module", name="clip")
def clip_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s MP4 the producers capture."""
    if not have_ffmpeg():
        pytest.skip("ffmpeg is not installed")
    return make_mp4(tmp_path_factory.mktemp("feeding") / "clip.mp4", seconds=2)


@pytest.fixture(scope="module", name="env")
def env_fixture(
    request: pytest.FixtureRequest, redis_server: RedisServer, clip: Path
) -> dict[str, str]:
    """The processes' environment: the module's PREFIX, quick claims and heartbeats."""
    # SOURCE_FILE_ROOTS lets the capture read the test's clip wherever file roots are enforced.
    return {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": request.module.PREFIX,
        "SOURCE_FILE_ROOTS": str(clip.parent),
        **CAPTURE_ENV,
    }


@pytest.fixture(scope="module", name="server")
def server_fixture(env: dict[str, str]) -> Iterator[ApiServer]:
    """One `lookout api` for the module's tests."""
    api = ApiServer(env, f"api-{env['KEY_PREFIX']}")
    yield api
    api.stop()


@pytest.fixture(name="processes")
def processes_fixture() -> Iterator[list[LookoutProcess]]:
    """Feeders a test starts (appends); killed when it ends."""
    procs: list[LookoutProcess] = []
    yield procs
    for proc in procs:
        proc.stop(signal.SIGKILL)


def ingest_url(server: ApiServer, name: str) -> str:
    """The ingest WebSocket of source `name`."""
    return server.url.replace("http", "ws") + f"/api/sources/{name}/ingest"
