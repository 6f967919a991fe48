"""Captures of real media into a real Redis: an ffmpeg MP4, an HTTP MJPEG server, GStreamer's
RTSP server; servers killed mid-stream and brought back; corrupt and silent inputs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from producers.capture import Capture, CaptureFailed
from shared.jpeg import decode_jpeg
from shared.keys import Keys
from shared.messages import SourceNotice, decode_message
from shared.producer_status import read_producer_status
from shared.records import FrameRecord
from shared.settings import Settings
from shared.settings_env import load_settings
from shared.source_urls import SourceOptions
from tests.media import MjpegServer, RtspServer, SilentServer, make_jpegs, make_mp4, truncate_copy
from tests.worker_support import until

FAST = {
    "RECONNECT_DELAY": "0.2",
    "MAX_RECONNECT_DELAY": "1",
    "STALL_TIMEOUT": "2",
    "OPEN_TIMEOUT": "2",
    "MAX_READ_FAILURES": "5",
    "HEARTBEAT_TTL": "3",
}


@pytest.fixture
def fast(test_env: dict[str, str]) -> Settings:
    return load_settings({**test_env, **FAST}, env_file=None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return make_jpegs(12)


@pytest.fixture
def mjpeg(jpegs: list[bytes]) -> Iterator[MjpegServer]:
    # One corrupt part (a truncated JPEG) among good ones: it must be skipped, never published.
    server = MjpegServer([*jpegs[:5], jpegs[5][:-200], *jpegs[6:]], fps=20).start()
    yield server
    server.stop()


class Running:
    """A capture running as a task in this test's loop."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.task = asyncio.create_task(capture.run())

    async def stop(self) -> str:
        self.capture.stop.set()
        return await asyncio.wait_for(self.task, 15)


@pytest.fixture
async def start(
    redis_client: aioredis.Redis, fast: Settings
) -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def _start(name: str, url: str, options: SourceOptions | None = None) -> Running:
        run = Running(Capture(redis_client, fast, name, url, options, policy=None))
        running.append(run)
        return run

    yield _start
    for run in running:
        if not run.task.done():
            await run.stop()


async def frames(redis: aioredis.Redis, keys: Keys, source: str) -> list[FrameRecord]:
    entries = await redis.xrange(keys.frames(source))
    return [FrameRecord.from_fields(fields) for _, fields in entries]


async def state_of(redis: aioredis.Redis, settings: Settings, source: str) -> dict[str, str]:
    """The producer status hash as written (text fields), {} when there is none."""
    status = await read_producer_status(redis, settings, source)
    return status.to_fields() if status is not None else {}


def assert_increasing(records: list[FrameRecord]) -> None:
    seqs = [r.seq for r in records]
    assert seqs == sorted(set(seqs)), seqs
    assert all(b.ts > a.ts for a, b in zip(records, records[1:], strict=False))


async def test_file_frames_land_resized_with_increasing_seq_and_live_status(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    clip: Path,
    start: Callable[..., Running],
) -> None:
    run = start("cam1", str(clip), SourceOptions(max_edge=320))
    await until(lambda: _count_at_least(redis_client, keys, "cam1", 8), 10, "8 frames")
    records = await frames(redis_client, keys, "cam1")
    assert_increasing(records)
    assert {(r.width, r.height) for r in records} == {(320, 180)}
    assert decode_jpeg(
        records[0].jpeg, fast.max_frame_bytes, max_pixels=fast.ingest_pixel_limit
    ).shape == (180, 320, 3)
    status = await state_of(redis_client, fast, "cam1")
    assert status["state"] == "live" and status["kind"] == "file"
    assert int(status["frames"]) >= 1 and status["url"] == str(clip)
    assert await redis_client.sismember(keys.sources, "cam1")  # type: ignore[misc]
    assert await run.stop() == "stopped"
    assert (await state_of(redis_client, fast, "cam1"))["state"] == "stopped"


async def _count_at_least(redis: aioredis.Redis, keys: Keys, source: str, count: int) -> bool:
    return int(await redis.xlen(keys.frames(source))) >= count


async def test_file_played_once_finishes_and_restart_continues_seq(
    redis_client: aioredis.Redis, keys: Keys, tmp_path: Path, start: Callable[..., Running]
) -> None:
    short = make_mp4(tmp_path / "short.mp4", seconds=1)
    first = start("once", str(short), SourceOptions(loop=False, fps=30))
    assert await asyncio.wait_for(first.task, 15) == "finished"
    played = await frames(redis_client, keys, "once")
    assert 8 <= len(played) <= 11  # 1 s of a 10 fps clip, every frame, nothing twice
    second = start("once", str(short), SourceOptions(loop=False, fps=30))
    assert await asyncio.wait_for(second.task, 15) == "finished"
    both = await frames(redis_client, keys, "once")
    assert_increasing(both)
    assert both[len(played)].seq == played[-1].seq + 1


async def test_truncated_mp4_is_a_clear_error_and_status_says_so(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    clip: Path,
    tmp_path: Path,
    start: Callable[..., Running],
) -> None:
    broken = truncate_copy(clip, tmp_path / "broken.mp4", 0.5)
    run = start("broken", str(broken))
    with pytest.raises(CaptureFailed, match="broken.mp4"):
        await asyncio.wait_for(run.task, 15)
    status = await state_of(redis_client, fast, "broken")
    assert status["state"] == "stopped" and "broken.mp4" in status["error"]
    assert await redis_client.xlen(keys.frames("broken")) == 0


async def test_mjpeg_server_killed_and_back_reconnects_without_restart(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    mjpeg: MjpegServer,
    start: Callable[..., Running],
) -> None:
    events = redis_client.pubsub()
    await events.subscribe(keys.events_channel("phone"))
    start("phone", mjpeg.url())
    await until(lambda: _count_at_least(redis_client, keys, "phone", 12), 10, "12 frames")
    assert (await state_of(redis_client, fast, "phone"))["kind"] == "mjpeg"
    mjpeg.stop()

    async def reconnecting() -> bool:
        status = await state_of(redis_client, fast, "phone")
        return status.get("state") == "reconnecting" and int(status["attempt"]) >= 2

    await until(reconnecting, 10, "reconnecting with backoff")
    assert (await state_of(redis_client, fast, "phone"))["error"]
    before = await frames(redis_client, keys, "phone")
    mjpeg.start()
    await until(
        lambda: _count_at_least(redis_client, keys, "phone", len(before) + 5), 10, "frames again"
    )
    after = await frames(redis_client, keys, "phone")
    assert_increasing(after)
    status = await state_of(redis_client, fast, "phone")
    assert status["state"] == "live" and status["attempt"] == "0"
    for record in after:  # the truncated part was never published
        decode_jpeg(record.jpeg, fast.max_frame_bytes, max_pixels=fast.ingest_pixel_limit)
    assert len({r.jpeg for r in after}) >= 5
    notices = []
    for _ in range(20):  # None stands for the subscribe confirmation or a quiet 0.2 s
        raw = await events.get_message(ignore_subscribe_messages=True, timeout=0.2)
        message = None if raw is None else decode_message(raw["data"])
        if isinstance(message, SourceNotice) and message.what == "producer":
            notices.append(message.detail)
        if len(notices) == 3:
            break
    await events.aclose()
    assert notices == ["live", "reconnecting", "live"]  # each state change announced once


@pytest.mark.skipif(not RtspServer.available(), reason="GStreamer RTSP server not installed")
async def test_rtsp_server_killed_and_back_reconnects_without_restart(
    redis_client: aioredis.Redis, fast: Settings, keys: Keys, start: Callable[..., Running]
) -> None:
    server = RtspServer().start()
    try:
        start("ipcam", server.url)
        await until(lambda: _count_at_least(redis_client, keys, "ipcam", 5), 20, "RTSP frames")
        server.stop()

        async def reconnecting() -> bool:
            return (await state_of(redis_client, fast, "ipcam")).get("state") == "reconnecting"

        await until(reconnecting, 15, "reconnecting")
        count = int(await redis_client.xlen(keys.frames("ipcam")))
        server = RtspServer(port=server.port).start()
        await until(
            lambda: _count_at_least(redis_client, keys, "ipcam", count + 5), 25, "frames again"
        )
        assert_increasing(await frames(redis_client, keys, "ipcam"))
        assert (await state_of(redis_client, fast, "ipcam"))["state"] == "live"
    finally:
        server.stop()


async def test_silent_url_and_non_mjpeg_url_fail_clearly_while_another_source_runs(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    clip: Path,
    mjpeg: MjpegServer,
    start: Callable[..., Running],
) -> None:
    silent = SilentServer()
    try:
        start("silent", f"http://127.0.0.1:{silent.port}/stream")
        start("snapshot", mjpeg.url("/plain"))
        start("good", str(clip))

        async def errors_shown() -> bool:
            a = await state_of(redis_client, fast, "silent")
            b = await state_of(redis_client, fast, "snapshot")
            return "timed out" in a.get("error", "") and "not an MJPEG stream" in b.get("error", "")

        await until(errors_shown, 15, "both errors in the status")
        count = int(await redis_client.xlen(keys.frames("good")))
        await until(
            lambda: _count_at_least(redis_client, keys, "good", count + 5), 10, "good frames"
        )
        assert (await state_of(redis_client, fast, "silent"))["state"] == "reconnecting"
        assert await redis_client.xlen(keys.frames("silent")) == 0
    finally:
        silent.close()


async def test_mjpeg_parts_without_length_and_basic_auth(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    jpegs: list[bytes],
    start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="producers.mjpeg")
    server = MjpegServer(jpegs, fps=20, auth="cam:s3cret").start()
    try:
        start("nolength", f"http://cam:s3cret@127.0.0.1:{server.port}/stream-nolength")
        start("wrongpw", f"http://cam:nope@127.0.0.1:{server.port}/stream")
        await until(lambda: _count_at_least(redis_client, keys, "nolength", 8), 10, "frames")
        records = await frames(redis_client, keys, "nolength")
        assert {r.jpeg for r in records} <= set(jpegs)  # parts arrive byte for byte

        async def refused() -> bool:
            return "cannot open" in (await state_of(redis_client, fast, "wrongpw")).get("error", "")

        await until(refused, 10, "the refusal in the status")
        status = await state_of(redis_client, fast, "wrongpw")
        assert "s3cret" not in str(status) and "nope" not in status["url"]
        # The status says as little as for a closed port; the log tells the operator why.
        assert "401" not in status["error"] and "HTTP 401" in caplog.text
    finally:
        server.stop()


async def test_stalled_mjpeg_stream_is_detected_and_recovers(
    redis_client: aioredis.Redis,
    fast: Settings,
    keys: Keys,
    mjpeg: MjpegServer,
    start: Callable[..., Running],
) -> None:
    start("stall", mjpeg.url())
    await until(lambda: _count_at_least(redis_client, keys, "stall", 5), 10, "frames")
    mjpeg.paused.set()  # the connection stays open, nothing arrives

    async def stalled() -> bool:
        status = await state_of(redis_client, fast, "stall")
        return status.get("state") == "reconnecting" and "timeout" in status.get("error", "")

    await until(stalled, 10, "the stall noticed")
    count = int(await redis_client.xlen(keys.frames("stall")))
    mjpeg.paused.clear()
    await until(lambda: _count_at_least(redis_client, keys, "stall", count + 5), 10, "frames again")
    assert (await state_of(redis_client, fast, "stall"))["state"] == "live"
