"""Starting and stopping sources through producers.control, and supervisors as real processes:
three sources started, one stopped, the supervisor killed -9 and a new one taking over."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from producers.supervisor import SHUTDOWN_GRACE_S
from shared.keys import Keys, SourceNameError
from shared.producer_status import read_producer_status
from shared.records import FrameRecord
from shared.settings import Settings
from shared.settings_env import load_settings
from shared.source_control import (
    SourceExists,
    UnknownSource,
    list_desired,
    start_source,
    stop_source,
)
from shared.source_urls import SourceOptions, SourceUrlError
from tests.helpers import LookoutProcess, RedisServer
from tests.media import make_mp4, truncate_copy
from tests.worker_support import until

SUPERVISOR_ENV = {
    "CLAIM_TTL": "2",
    "HEARTBEAT_TTL": "3",
    "RECONNECT_DELAY": "0.2",
    "MAX_RECONNECT_DELAY": "1",
    "DISPLAY_FPS": "5",
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("sup") / "clip.mp4", seconds=2)


@pytest.fixture
def settings(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The test's settings, with its temporary folders as the roots of file sources."""
    roots = {"SOURCE_FILE_ROOTS": str(tmp_path_factory.getbasetemp())}
    return load_settings({**test_env, **roots}, env_file=None)


async def test_start_and_stop_validate_and_refuse_duplicates(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, clip: Path
) -> None:
    with pytest.raises(SourceNameError):
        await start_source(redis_client, settings, "bad name", str(clip))
    with pytest.raises(SourceUrlError, match="unsupported scheme"):
        await start_source(redis_client, settings, "cam", "gopher://x/y")
    job_id = await start_source(redis_client, settings, "cam", str(clip), SourceOptions(fps=2))
    assert job_id.startswith("capture:cam:")
    assert await redis_client.zscore(keys.producer_queue, job_id) is not None
    with pytest.raises(SourceExists):
        await start_source(redis_client, settings, "cam", str(clip))
    [entry] = await list_desired(redis_client, settings)
    assert (entry.name, entry.url, entry.options.fps, entry.job_id) == ("cam", str(clip), 2, job_id)
    await stop_source(redis_client, settings, "cam")
    assert await list_desired(redis_client, settings) == []
    with pytest.raises(UnknownSource):
        await stop_source(redis_client, settings, "cam")
    with pytest.raises(UnknownSource):
        await stop_source(redis_client, settings, "never-started")


async def test_a_source_captured_by_a_standalone_producer_cannot_be_started(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys, clip: Path
) -> None:
    await redis_client.hset(keys.producer_status("cam"), mapping={"state": "live", "pid": "42"})  # type: ignore[misc]
    with pytest.raises(SourceExists, match="pid 42"):
        await start_source(redis_client, settings, "cam", str(clip))
    assert await list_desired(redis_client, settings) == []


@pytest.fixture
def supervisor_env(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    roots = {"SOURCE_FILE_ROOTS": str(tmp_path_factory.getbasetemp())}
    return {**test_env, **SUPERVISOR_ENV, **roots}


@pytest.fixture
def supervisors() -> Iterator[list[LookoutProcess]]:
    procs: list[LookoutProcess] = []
    yield procs
    for proc in procs:
        proc.stop(signal.SIGKILL)


async def _last_seq(redis: aioredis.Redis, keys: Keys, source: str) -> int:
    entries = await redis.xrevrange(keys.frames(source), count=1)
    return FrameRecord.from_fields(entries[0][1]).seq if entries else 0


@pytest.mark.slow
async def test_supervisor_runs_sources_and_a_new_one_takes_over_after_kill_9(
    redis_client: aioredis.Redis,
    supervisor_env: dict[str, str],
    clip: Path,
    supervisors: list[LookoutProcess],
) -> None:
    settings = load_settings(supervisor_env, env_file=None)
    keys = Keys(settings.key_prefix)
    first = LookoutProcess(["producer", "--supervise"], supervisor_env, "sup1")
    supervisors.append(first)
    for name in ("a", "b", "c"):
        await start_source(redis_client, settings, name, str(clip))

    async def live(names: tuple[str, ...], pid: int) -> bool:
        for name in names:
            status = await read_producer_status(redis_client, settings, name)
            if not status or status.state != "live" or status.pid != pid:
                return False
            if await redis_client.xlen(keys.frames(name)) < 2:
                return False
        return True

    await until(lambda: live(("a", "b", "c"), first.proc.pid), 30, "three live sources")
    await stop_source(redis_client, settings, "b")

    async def b_stopped() -> bool:
        status = await read_producer_status(redis_client, settings, "b")
        return status is not None and status.state == "stopped"

    await until(b_stopped, 10, "b stopped")
    b_frames = await redis_client.xlen(keys.frames("b"))

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    seqs = {name: await _last_seq(redis_client, keys, name) for name in ("a", "c")}
    second = LookoutProcess(["producer", "--supervise"], supervisor_env, "sup2")
    supervisors.append(second)

    async def resumed() -> bool:
        for name in ("a", "c"):
            if await _last_seq(redis_client, keys, name) <= seqs[name] + 2:
                return False
        return await live(("a", "c"), second.proc.pid)

    took = await until(resumed, 20, "a and c captured by the new supervisor")
    assert took < 20, second.log()
    for name in ("a", "c"):  # one capture per source: sequence numbers never repeat
        records = [
            FrameRecord.from_fields(f) for _, f in await redis_client.xrange(keys.frames(name))
        ]
        assert [r.seq for r in records] == sorted({r.seq for r in records})
    assert await redis_client.xlen(keys.frames("b")) == b_frames
    assert [e.name for e in await list_desired(redis_client, settings)] == ["a", "c"]

    assert second.stop(signal.SIGTERM, timeout=SHUTDOWN_GRACE_S + 20) == 0, second.log()
    for name in ("a", "c"):
        status = await read_producer_status(redis_client, settings, name)
        assert status is not None and status.state == "stopped", second.log()
    assert "Traceback" not in second.log(), second.log()


async def _statuses(
    redis: aioredis.Redis, settings: Settings, names: list[str]
) -> list[dict[str, str]]:
    statuses = [await read_producer_status(redis, settings, name) for name in names]
    return [s.to_fields() if s is not None else {} for s in statuses]


@pytest.mark.slow
async def test_two_supervisors_capture_each_source_once_and_sigterm_hands_over(
    redis_client: aioredis.Redis,
    supervisor_env: dict[str, str],
    clip: Path,
    tmp_path: Path,
    supervisors: list[LookoutProcess],
) -> None:
    settings = load_settings(supervisor_env, env_file=None)
    keys = Keys(settings.key_prefix)
    one = LookoutProcess(["producer", "--supervise"], supervisor_env, "sup1")
    two = LookoutProcess(["producer", "--supervise"], supervisor_env, "sup2")
    supervisors.extend([one, two])
    names = ["s1", "s2", "s3", "s4"]
    for name in names:
        await start_source(redis_client, settings, name, str(clip))
    broken = truncate_copy(clip, tmp_path / "broken.mp4", 0.5)
    await start_source(redis_client, settings, "broken", str(broken))
    pids = {str(one.proc.pid), str(two.proc.pid)}

    async def all_live(allowed: set[str]) -> bool:
        statuses = await _statuses(redis_client, settings, names)
        return all(s.get("state") == "live" and s.get("pid") in allowed for s in statuses)

    await until(lambda: all_live(pids), 30, "four live sources")

    async def broken_failed() -> bool:
        status = await read_producer_status(redis_client, settings, "broken")
        failed = [e.name for e in await list_desired(redis_client, settings) if e.error]
        return status is not None and status.state == "stopped" and failed == ["broken"]

    await until(broken_failed, 10, "the unreadable file marked failed")
    status = await read_producer_status(redis_client, settings, "broken")
    assert status is not None and "broken.mp4" in status.error
    with pytest.raises(SourceExists, match="failed"):  # kept, with its error, until removed
        await start_source(redis_client, settings, "broken", str(broken))
    await stop_source(redis_client, settings, "broken")
    # Enough new frames of every source that a second capture of one would have shown in them.
    # (Sequence numbers, not stream lengths: FRAMES_MAXLEN caps the length.)
    seqs = {n: await _last_seq(redis_client, keys, n) for n in names}

    async def grew() -> bool:
        now = [await _last_seq(redis_client, keys, n) for n in names]
        return all(seq >= seqs[n] + 5 for seq, n in zip(now, names, strict=True))

    await until(grew, 20, "five more frames of every source")
    # A graceful stop releases its claims (within the captures' grace time, and then some).
    assert one.stop(signal.SIGTERM, timeout=SHUTDOWN_GRACE_S + 20) == 0, one.log()
    await until(lambda: all_live({str(two.proc.pid)}), 20, "all sources on the second")
    for name in names:
        records = [
            FrameRecord.from_fields(f) for _, f in await redis_client.xrange(keys.frames(name))
        ]
        assert [r.seq for r in records] == sorted({r.seq for r in records}), name
        claim = await redis_client.get(keys.producer_claim(name))
        assert claim is not None and claim.decode().endswith(
            (await list_desired(redis_client, settings))[names.index(name)].job_id
        )


@pytest.mark.slow
async def test_supervised_source_survives_a_redis_restart(
    supervisor_env: dict[str, str], clip: Path, supervisors: list[LookoutProcess]
) -> None:
    server = RedisServer().start()
    env = {**supervisor_env, "REDIS_URL": server.url}
    settings = load_settings(env, env_file=None)
    keys = Keys(settings.key_prefix)
    client = aioredis.Redis.from_url(server.url)
    try:
        supervisors.append(LookoutProcess(["producer", "--supervise"], env, "sup"))
        await start_source(client, settings, "cam", str(clip))
        await until(lambda: _has_frames(client, keys, 3), 30, "frames before the restart")
        before = await _last_seq(client, keys, "cam")
        server.stop()
        await asyncio.sleep(1.5)
        server.start()  # empty: no persistence
        await until(lambda: _has_frames(client, keys, 3), 30, "frames after the restart")
        assert await _last_seq(client, keys, "cam") > before  # numbering went on

        async def desired_back() -> bool:  # restored on the supervisor's next claim tick
            return [e.name for e in await list_desired(client, settings)] == ["cam"]

        await until(desired_back, 10, "the desired entry restored by the supervisor")
        assert await client.sismember(keys.sources, "cam")  # type: ignore[misc]
    finally:
        await client.aclose()
        server.stop()


async def _has_frames(redis: aioredis.Redis, keys: Keys, count: int) -> bool:
    try:
        return int(await redis.xlen(keys.frames("cam"))) >= count
    except (ConnectionError, OSError, aioredis.ConnectionError):
        return False
