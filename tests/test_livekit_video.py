"""Frames to and from LiveKit (issue 16): JPEG → `rtc.VideoFrame` checked pixel for pixel
against OpenCV, newest-frame-wins pacing against real Redis, and `rtc.VideoFrame` → BGR for
the camera path; hostile frames are refused before anything big is allocated."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis
from livekit import rtc

from bridge.camera import video_frame_to_bgr
from bridge.video import VideoPump, jpeg_to_video_frame
from shared.jpeg import JpegError
from shared.keys import Keys
from shared.records import FrameRecord
from shared.settings import Settings
from tests.test_api_support import add_frame, make_jpeg

pytestmark = pytest.mark.usefixtures("livekit_handles_released")


def test_jpeg_becomes_an_rgba_frame_identical_to_opencvs_decode(settings: Settings) -> None:
    jpeg = make_jpeg(3, width=321, height=179)  # odd sizes: no rounding to even
    frame = jpeg_to_video_frame(jpeg, settings)
    expected = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGBA
    )
    assert (frame.width, frame.height, frame.type) == (321, 179, rtc.VideoBufferType.RGBA)
    got = np.frombuffer(frame.data, np.uint8).reshape(179, 321, 4)
    assert np.array_equal(got, expected)
    # The SDK's own conversion to I420 (what WebRTC encodes) agrees with OpenCV's within the
    # rounding of the two colour matrices.
    i420 = frame.convert(rtc.VideoBufferType.I420)
    assert (i420.width, i420.height) == (321, 179)
    back = i420.convert(rtc.VideoBufferType.RGBA)
    diff = np.abs(np.frombuffer(back.data, np.uint8).reshape(179, 321, 4).astype(int) - expected)
    assert diff[..., :3].mean() < 4


@pytest.mark.parametrize(
    "data, why",
    [
        (make_jpeg(1)[:-200], "truncated"),
        (cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "not a JPEG"),
        (b"", "empty"),
    ],
)
def test_bad_jpegs_are_refused_before_decoding(settings: Settings, data: bytes, why: str) -> None:
    with pytest.raises(JpegError):
        jpeg_to_video_frame(data, settings)


def test_a_decompression_bomb_is_refused_by_its_header(settings: Settings) -> None:
    jpeg = bytearray(make_jpeg(1, width=64, height=64))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # claims 30000x30000
    with pytest.raises(JpegError, match="MAX_INGEST_PIXELS"):
        jpeg_to_video_frame(bytes(jpeg), settings)


async def test_only_the_newest_frame_is_sent_and_never_twice(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys
) -> None:
    sent: list[rtc.VideoFrame] = []
    pump = VideoPump(redis_client, settings, "cam", sent.append)
    assert await pump.tick() is False  # no frames yet: nothing sent
    for seq in range(1, 6):
        await add_frame(redis_client, keys, "cam", seq, make_jpeg(seq))
    assert await pump.tick() is True
    assert await pump.tick() is False  # nothing new
    assert pump.last_seq == 5 and pump.sent == 1 and pump.skipped == 0
    expected = jpeg_to_video_frame(make_jpeg(5), settings)
    assert bytes(sent[0].data) == bytes(expected.data)
    for seq in range(6, 10):
        await add_frame(redis_client, keys, "cam", seq, make_jpeg(seq))
    assert await pump.tick() is True
    assert pump.last_seq == 9 and pump.skipped == 3  # 6, 7 and 8 came and went: newest wins


async def test_a_bad_entry_in_the_stream_is_skipped(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys
) -> None:
    sent: list[rtc.VideoFrame] = []
    pump = VideoPump(redis_client, settings, "cam", sent.append)
    bad = FrameRecord(seq=1, ts=1.0, width=320, height=180, jpeg=b"\xff\xd8\xffnot really")
    await redis_client.xadd(keys.frames("cam"), bad.to_fields())  # type: ignore[arg-type]
    assert await pump.tick() is False  # markers right, content not a JPEG
    await redis_client.xadd(keys.frames("cam"), {"seq": "x"})
    assert await pump.tick() is False  # not a frame record at all
    await add_frame(redis_client, keys, "cam", 2, make_jpeg(2))
    assert await pump.tick() is True
    assert pump.bad == 2 and len(sent) == 1


async def test_frames_reach_a_subscriber_through_a_real_video_source(
    redis_client: aioredis.Redis, settings: Settings, keys: Keys
) -> None:
    source = rtc.VideoSource(320, 180)
    track = rtc.LocalVideoTrack.create_video_track("video", source)
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
    pump = VideoPump(redis_client, settings, "cam", source.capture_frame)
    stop = asyncio.Event()
    running = asyncio.create_task(pump.run(stop))
    try:
        await add_frame(redis_client, keys, "cam", 1, make_jpeg(4))
        event = await asyncio.wait_for(anext(aiter(stream)), 20)
    finally:
        stop.set()
        await running
        await stream.aclose()
    frame = event.frame
    assert (frame.width, frame.height) == (320, 180)
    expected = np.frombuffer(jpeg_to_video_frame(make_jpeg(4), settings).data, np.uint8)
    got = np.frombuffer(frame.data, np.uint8)
    # WebRTC carries I420: colours come back within its chroma subsampling.
    assert np.abs(got.astype(int) - expected).reshape(-1, 4)[:, :3].mean() < 6


def test_a_camera_frame_becomes_the_bgr_image_it_was_made_from() -> None:
    rng = np.random.default_rng(5)
    bgr = rng.integers(0, 256, (90, 161, 3), dtype=np.uint8)
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    frame = rtc.VideoFrame(161, 90, rtc.VideoBufferType.RGBA, rgba.tobytes())
    assert np.array_equal(video_frame_to_bgr(frame, 1_000_000), bgr)
    # What a browser camera sends is I420: compare with OpenCV's own I420 → BGR.
    even = bgr[:, :160]
    yuv = cv2.cvtColor(even, cv2.COLOR_BGR2YUV_I420)
    i420 = rtc.VideoFrame(160, 90, rtc.VideoBufferType.I420, yuv.tobytes())
    opencv = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    got = video_frame_to_bgr(i420, 1_000_000)
    assert got.shape == (90, 160, 3)
    assert np.abs(got.astype(int) - opencv).mean() < 4


def test_an_oversized_camera_frame_is_refused_before_conversion() -> None:
    # 8000x8000 claimed by the frame's header, with a tiny buffer: refused on the numbers alone.
    frame = rtc.VideoFrame(8000, 8000, rtc.VideoBufferType.I420, bytes(16))
    with pytest.raises(JpegError, match="MAX_INGEST_PIXELS"):
        video_frame_to_bgr(frame, 4096 * 2160)
