"""Decompression bombs: a tiny JPEG whose frame header claims 32000x32000 is refused from its
header, before OpenCV allocates gigabytes, on every path that decodes untrusted pictures: the
API's ingest socket (a real process, whose peak RSS is watched), MJPEG cameras, frames read
back from Redis, and picture files."""

from __future__ import annotations

import asyncio
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
import websockets

from producers.readers import ReaderConfig, SourceOpenError, open_reader
from shared.jpeg import JpegError, decode_jpeg, image_header_size, jpeg_size
from shared.records import FrameRecord
from shared.settings import Settings
from shared.settings_env import load_settings
from shared.source_urls import parse_source_url
from shared.urlpolicy import SourcePolicy
from tests.media import MjpegServer
from tests.test_api_support import ApiServer, make_jpeg
from worker.windows import SampleBuffer

CONTROL = "control-secret-bomb"
BOMB_EDGE = 32000
# The API's peak RSS may grow by this much while refusing bombs (one bomb decoded: ~3 GB).
RSS_GROWTH_BOUND_KB = 64 * 1024


def sof_offset(jpeg: bytes) -> int:
    """Offset of the frame header's segment (its FF Cn marker), found by walking segments."""
    pos = 2
    while jpeg[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
    return pos


def with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header claiming `width` x `height` (the data stays small)."""
    pos = sof_offset(jpeg) + 5  # FF Cn, length (2), precision (1)
    return jpeg[:pos] + struct.pack(">HH", height, width) + jpeg[pos + 4 :]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = with_size(make_jpeg(1), BOMB_EDGE, BOMB_EDGE)
    assert len(data) < 20_000 and jpeg_size(data) == (BOMB_EDGE, BOMB_EDGE)
    return data


def test_sizes_are_read_from_headers_of_every_frame_kind() -> None:
    image = np.full((90, 160, 3), 128, np.uint8)
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert progressive[sof_offset(progressive) + 1] == 0xC2
    assert jpeg_size(progressive) == (160, 90)
    plain = make_jpeg(0, 320, 180)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 14) + b"Exif\x00\x00" + b"\xff\xc0" * 4
    padded = plain[:2] + app1 + b"\xff\xff" + plain[2:]  # an APP1 with a fake SOF, fill bytes
    assert jpeg_size(padded) == (320, 180)
    png = cv2.imencode(".png", image)[1].tobytes()
    assert image_header_size(png) == (160, 90) and image_header_size(b"GIF89a") is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xd8\xff\xda\x00\x02", "before the frame header"),
        (b"\xff\xd8\xff\xe0\x00\x40\x00", "bad length"),
        (b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x00\x10\x01\x01\x11\x00", "gives no size"),
        (b"\xff\xd8\x00\x00", "no marker"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(JpegError, match=reason):
        jpeg_size(data)


def test_bombs_are_refused_before_decoding_and_limits_follow_the_settings(bomb: bytes) -> None:
    with pytest.raises(JpegError, match="32000x32000 pixels exceeds MAX_INGEST_PIXELS"):
        decode_jpeg(bomb, 2_000_000, max_pixels=10_000_000)
    assert load_settings({}, env_file=None).ingest_pixel_limit == 4096 * 2160
    assert load_settings({"MAX_FRAME_EDGE": "7680"}, env_file=None).ingest_pixel_limit == 7680**2
    explicit = load_settings({"MAX_INGEST_PIXELS": "1000000"}, env_file=None)
    assert explicit.ingest_pixel_limit == 1_000_000
    big = make_jpeg(0, 1920, 1080)
    with pytest.raises(JpegError, match="1920x1080"):
        decode_jpeg(big, 2_000_000, max_pixels=explicit.ingest_pixel_limit)
    reduced = decode_jpeg(big, 2_000_000, max_pixels=10_000_000, max_edge=640)
    assert reduced.shape == (540, 960, 3)  # decoded at half size, never below the edge


def test_frames_read_back_from_redis_are_checked(settings: Settings, bomb: bytes) -> None:
    buffer = SampleBuffer("cam", settings)
    assert not buffer.offer(FrameRecord(seq=1, ts=1.0, width=1, height=1, jpeg=bomb))
    assert buffer.rejected == 1
    assert buffer.offer(FrameRecord(seq=2, ts=2.0, width=320, height=180, jpeg=make_jpeg(2)))


def _config(max_pixels: int, roots: str = "") -> ReaderConfig:
    policy = SourcePolicy(frozenset({"http", "file"}), (roots,), allow_loopback=True)
    return ReaderConfig(
        fps=5,
        rtsp_transport="tcp",
        open_timeout=3,
        read_timeout=3,
        max_bytes=2_000_000,
        max_pixels=max_pixels,
        policy=policy,
    )


def test_mjpeg_cameras_and_picture_files_are_checked(bomb: bytes, tmp_path: Path) -> None:
    server = MjpegServer([bomb, make_jpeg(3)], fps=20).start()
    try:
        reader = open_reader(parse_source_url(server.url()), _config(10_000_000))
        try:
            results = [reader.read() for _ in range(4)]
        finally:
            reader.close()
    finally:
        server.stop()
    assert [r is None for r in results] == [True, False, True, False]  # the bomb is skipped
    png = tmp_path / "huge.png"
    header = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    png.write_bytes(header[:16] + struct.pack(">II", 30000, 30000) + header[24:])
    with pytest.raises(SourceOpenError, match="30000x30000 pixels exceeds") as refused:
        open_reader(parse_source_url(str(png)), _config(10_000_000, str(tmp_path)))
    assert refused.value.permanent


@pytest.fixture
def api(test_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer({**test_env, "API_KEYS": f"{CONTROL}:control"}, "api-bomb")
    yield server
    server.proc.stop(signal.SIGTERM)


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the most resident memory process `pid` ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


async def _send(url: str, frames: list[bytes]) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {CONTROL}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        replies = []
        for frame in frames:
            await ws.send(frame)
            replies.append(msgspec.json.decode(await ws.recv()))
        return replies


@pytest.mark.slow
async def test_the_running_api_refuses_bombs_with_flat_peak_memory(
    api: ApiServer, bomb: bytes
) -> None:
    url = api.url.replace("http", "ws") + "/api/sources/{}/ingest"
    # A good frame first, so the baseline includes OpenCV's own decoding buffers.
    assert await _send(url.format("webcam"), [make_jpeg(1)]) == [{"seq": 1}]
    before = peak_rss_kb(api.proc.proc.pid)
    answers = await asyncio.gather(*(_send(url.format(f"bomb{i}"), [bomb] * 3) for i in range(3)))
    for reply in (r for replies in answers for r in replies):
        assert "32000x32000 pixels exceeds MAX_INGEST_PIXELS" in str(reply["error"]), reply
    assert await _send(url.format("webcam"), [make_jpeg(2)]) == [{"seq": 2}]  # still serving
    growth = peak_rss_kb(api.proc.proc.pid) - before
    print(f"API peak RSS {before} kB before the bombs, +{growth} kB after")
    assert growth < RSS_GROWTH_BOUND_KB, f"peak RSS grew by {growth} kB"
    assert api.proc.alive()
