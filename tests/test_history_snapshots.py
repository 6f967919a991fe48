"""History you can find things in (issue 14): frame seqs and times in history items and SSE
`commentary` events, and each commentary's snapshot, through real producer, worker and API
processes; snapshots trimmed exactly with their history entries on a real Redis."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis
from PIL import Image

from shared.keys import Keys
from shared.records import CommentaryRecord
from tests.e2e_support import SseReader, make_red_box_clip
from tests.helpers import LookoutProcess, free_port, wait_for_port
from worker.engines.base import WindowFrame
from worker.snapshots import HistoryWriter, fit_snapshot

SNAPSHOT_BUDGET = 5000  # below the clip's 640x360 frames at quality 80: forces a shrink


@pytest.fixture
def stack(tmp_path: Path, test_env: dict[str, str]) -> Iterator[str]:
    """Producer, worker and API as real processes on the test's Redis; yields the API base."""
    clip = make_red_box_clip(tmp_path / "red-box.mp4")
    port = free_port()
    env = {
        **test_env,
        "SERVER_PORT": str(port),
        "INFERENCE_INTERVAL": "0.2",
        "CAPTURE_FPS": "4",
        "CHANGE_THRESHOLD": "0",
        "SNAPSHOT_MAX_BYTES": str(SNAPSHOT_BUDGET),
    }
    procs = [
        LookoutProcess(["api"], env, "api"),
        LookoutProcess(["worker"], env, "worker"),
        LookoutProcess(["producer", "--source", "cam", "--url", str(clip)], env, "producer"),
    ]
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        codes = [(proc.stop(), proc) for proc in reversed(procs)]
    for code, proc in codes:
        assert code in (0, -signal.SIGTERM), proc.log()


def ffprobe_jpeg(data: bytes) -> dict[str, object]:
    """ffprobe's view of one image: codec and size."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
         "-of", "json", "-i", "pipe:0"],
        input=data, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    stream: dict[str, object] = json.loads(out.stdout)["streams"][0]
    return stream


@pytest.mark.slow
def test_commentary_carries_its_frames_and_a_snapshot_of_the_newest(stack: str) -> None:
    base = stack
    live = SseReader(f"{base}/api/sources/cam/events")
    try:
        started = live.next_matching(
            lambda e: e.event == "cycle" and e.data["event"] == "started", timeout=60
        )
        finished = live.next_matching(
            lambda e: (
                e.event == "cycle"
                and e.data["event"] == "finished"
                and e.data["cycle"] == started.data["cycle"]
            ),
            timeout=30,
        )
    finally:
        live.close()
    replay = SseReader(f"{base}/api/sources/cam/events")  # the history replays as `commentary`
    try:
        commentary = replay.next_matching(
            lambda e: e.event == "commentary" and e.id == finished.data["history_id"], timeout=30
        )
    finally:
        replay.close()
    item = commentary.data
    # The SSE event and the API's history item say which frames were described, and when.
    assert item["frame_seqs"] == started.data["frame_seqs"] and len(item["frame_seqs"]) >= 2
    assert item["frame_ts"] == pytest.approx(started.data["frame_ts"], abs=1e-5)
    assert (
        item["frame_ts"] == sorted(item["frame_ts"])
        and item["frame_ts"][-1] <= item["started_at"] + 1
    )
    assert item["snapshot"] is True and commentary.id == item["id"]
    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/api/sources/cam/history", params={"limit": 50}).json()
        listed = next(i for i in page["items"] if i["id"] == item["id"])
        assert listed["frame_seqs"] == item["frame_seqs"] and listed["snapshot"] is True
        response = http.get(f"/api/sources/cam/history/{item['id']}/snapshot.jpg")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        jpeg = response.content
        # The newest frame of the window, shrunk to the budget: a real JPEG showing the clip.
        assert len(jpeg) <= SNAPSHOT_BUDGET
        probe = ffprobe_jpeg(jpeg)
        assert probe["codec_name"] == "mjpeg"
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG" and image.size == (probe["width"], probe["height"])
        assert image.size[0] <= 640 and abs(image.size[0] * 360 - image.size[1] * 640) < 640
        live_frame = http.get("/api/sources/cam/frame")
        assert len(live_frame.content) > SNAPSHOT_BUDGET  # so the snapshot was re-encoded
        pixels = np.asarray(image.convert("RGB")).astype(int)
        red = (pixels[:, :, 0] > 170) & (pixels[:, :, 2] < 100)
        blue = (pixels[:, :, 2] > 150) & (pixels[:, :, 0] < 60)
        assert red.mean() > 0.01 and blue.mean() > 0.5  # the red square over blue
        # Unknown and malformed ids.
        missing = http.get("/api/sources/cam/history/1-0/snapshot.jpg")
        assert missing.status_code == 404 and "no snapshot" in missing.json()["error"]
        other = http.get(f"/api/sources/nope/history/{item['id']}/snapshot.jpg")
        assert other.status_code == 404


def frame(seed: int) -> WindowFrame:
    image = np.full((90, 160, 3), seed % 256, np.uint8)
    return WindowFrame(seq=seed, ts=float(seed), image=image, jpeg=b"\xff\xd8" + str(seed).encode())


async def test_snapshots_live_exactly_as_long_as_their_history_entries(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    writer = HistoryWriter(redis_client, keys, maxlen=10)
    ids = []
    for n in range(260):  # MAXLEN ~ trims whole stream nodes (100 entries each)
        record = CommentaryRecord(cycle=f"c{n}", status="finished", text=f"t{n}", instruction="")
        snapshot = b"" if n % 7 == 0 else fit_snapshot(frame(n), 1000)
        ids.append(await writer.append("cam", record, snapshot))
    history = [entry_id.decode() for entry_id, _ in await redis_client.xrange(keys.history("cam"))]
    snapshots = await redis_client.xrange(keys.snapshots("cam"))
    assert len(history) < 260, "the history was trimmed"
    assert history == ids[-len(history) :]
    kept = {entry_id.decode(): fields[b"jpeg"] for entry_id, fields in snapshots}
    assert set(kept) == {i for i in history if ids.index(i) % 7 != 0}
    assert kept[ids[-2]] == frame(258).jpeg  # the frame's own JPEG when it fits
    # What an alert on a window with nothing new points at, after a worker (re)starts.
    assert await writer.newest("cam") == (ids[-1], "t259")
    assert await writer.newest("nobody") == ("", "")


def test_a_snapshot_over_budget_is_shrunk_and_none_without_budget() -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (360, 640, 3), np.uint8)
    big = WindowFrame(seq=1, ts=1.0, image=noisy, jpeg=b"x" * 200_000)
    small = fit_snapshot(big, 20_000)
    assert 0 < len(small) <= 20_000 and small[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(small)).size[0] < 640
    assert fit_snapshot(big, 0) == b"" and fit_snapshot(big, 50) == b""
