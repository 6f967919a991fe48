"""FramePublisher against a real Redis: resizing, sequence numbers across restarts, monotonic
timestamps, and client JPEGs that are not acceptable."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.jpeg import JpegError, decode_jpeg, encode_jpeg
from shared.keys import Keys
from shared.publisher import FramePublisher, bound_image
from shared.records import FrameRecord
from shared.settings import Settings
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from tests.media import make_jpegs


def _image(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    image[height // 3 :, :, 1] = rng.integers(0, 255, (height - height // 3, width), np.uint8)
    return image


async def _records(redis: aioredis.Redis, keys: Keys, source: str) -> list[FrameRecord]:
    return [FrameRecord.from_fields(f) for _, f in await redis.xrange(keys.frames(source))]


async def test_images_are_bounded_numbered_and_time_ordered(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys
) -> None:
    publisher = FramePublisher(redis_client, settings, "cam", url="clip.mp4")
    first = await publisher.publish_image(_image(1920, 1080), ts=1000.0)
    second = await publisher.publish_image(_image(640, 360), ts=999.0)  # the clock stepped back
    assert (first.width, first.height) == (1280, 720)
    assert (second.width, second.height) == (640, 360)
    assert [first.seq, second.seq] == [1, 2]
    assert second.ts > first.ts == 1000.0
    stored = await _records(redis_client, keys, "cam")
    assert stored == [first, second]
    assert decode_jpeg(
        stored[0].jpeg, settings.max_frame_bytes, max_pixels=settings.ingest_pixel_limit
    ).shape == (720, 1280, 3)
    state = await SourceRegistry(redis_client, keys, "x").state("cam")
    assert state is not None and state.url == "clip.mp4"


async def test_a_new_publisher_continues_the_sequence_of_the_stream(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys
) -> None:
    for _ in range(3):
        await FramePublisher(redis_client, settings, "cam").publish_image(_image(64, 64))
    restarted = FramePublisher(redis_client, settings, "cam")
    record = await restarted.publish_image(_image(64, 64), ts=1.0)  # older than what is stored
    assert record.seq == 4
    stored = await _records(redis_client, keys, "cam")
    assert [r.seq for r in stored] == [1, 2, 3, 4] and stored[3].ts > stored[2].ts


async def test_client_jpegs_are_stored_as_sent_or_shrunk(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    small, big = make_jpegs(1, 320, 240)[0], make_jpegs(1, 1920, 1080)[0]
    publisher = FramePublisher(redis_client, settings, "webcam")
    as_sent = await publisher.publish_jpeg(small)
    assert as_sent.jpeg == small and (as_sent.width, as_sent.height) == (320, 240)
    shrunk = await publisher.publish_jpeg(big)
    assert (shrunk.width, shrunk.height) == (1280, 720) and shrunk.jpeg != big


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"GIF89a" + b"\x00" * 100, "not a JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a JPEG"),
        (b"\xff\xd8", "too short"),
        ("truncated", "truncated JPEG"),
        ("garbage-inside", "malformed JPEG"),
        ("oversize", "exceeds the limit"),
    ],
)
async def test_bad_client_jpegs_are_rejected_and_nothing_is_published(
    redis_client: aioredis.Redis, test_env: dict[str, str], payload: bytes | str, reason: str
) -> None:
    settings = load_settings({**test_env, "MAX_FRAME_BYTES": "20000"}, env_file=None)
    keys = Keys(settings.key_prefix)
    good = make_jpegs(1, 160, 120)[0]
    if payload == "truncated":
        payload = good[: len(good) // 2]
    elif payload == "garbage-inside":
        payload = good[:4] + b"\x00" * 300 + b"\xff\xd9"
    elif payload == "oversize":
        payload = encode_jpeg(_image(1280, 720), 95)
        assert len(payload) > 20000
    publisher = FramePublisher(redis_client, settings, "webcam")
    with pytest.raises(JpegError, match=reason):
        await publisher.publish_jpeg(payload)  # type: ignore[arg-type]
    assert await redis_client.xlen(keys.frames("webcam")) == 0
    assert (await publisher.publish_jpeg(good)).seq == 1  # and it keeps serving


def test_bound_image_never_enlarges() -> None:
    assert bound_image(_image(100, 50), 1280).shape == (50, 100, 3)
    assert bound_image(_image(360, 640), 320).shape == (320, 180, 3)
