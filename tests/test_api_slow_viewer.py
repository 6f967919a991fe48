"""A viewer that reads nothing must not delay the others (SSE and MJPEG).

Each test measures a fast viewer's latency without and then with a stalled viewer on the
same source and replica, prints both and writes them to test-artifacts/slow_viewer.json.
The assertions are about delivery (the fast viewer gets everything; the slow one really was
stalled and dropped), not about speed; the numbers are for the report.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import TextChunk
from shared.sources import SourceRegistry
from tests.helpers import REPO
from tests.test_api_support import ApiServer, SseReader, add_frame, wait_until

pytestmark = pytest.mark.slow

ARTIFACT = REPO / "test-artifacts" / "slow_viewer.json"
SSE_MESSAGES = 300
SSE_TEXT_BYTES = 32_000  # 300 x 32 kB is far more than the stalled socket's buffers
MJPEG_FRAMES = 50
SSE_IN_FLIGHT = 4  # chunks the publisher may be ahead of the fast viewer (< VIEWER_QUEUE=8)


@pytest.fixture
def server(test_env: dict[str, str]) -> Iterator[ApiServer]:
    api = ApiServer({**test_env, "DISPLAY_FPS": "30"}, "api-slow")
    yield api
    api.stop()


def stalled_viewer(port: int, path: str) -> socket.socket:
    """An HTTP client that sends its request and never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return sock


def drain(sock: socket.socket) -> int:
    """Bytes a stalled socket can read right now without waiting."""
    sock.setblocking(False)
    total = 0
    try:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    except BlockingIOError:
        pass
    return total


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def summary(latencies: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 2),
        "max_ms": round(ms[-1], 2),
    }


def record(kind: str, without: dict[str, float], with_slow: dict[str, float]) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    data = json.loads(ARTIFACT.read_text()) if ARTIFACT.is_file() else {}
    data[kind] = {"without_slow_viewer": without, "with_slow_viewer": with_slow}
    ARTIFACT.write_text(json.dumps(data, indent=2))
    print(f"\n{kind} fast-viewer latency   n   median   p95    max (ms)")
    for label, s in (("without slow", without), ("with slow", with_slow)):
        print(f"  {label:<22}{s['n']:>4} {s['median_ms']:>8} {s['p95_ms']:>6} {s['max_ms']:>6}")


async def sse_phase(api: ApiServer, redis: aioredis.Redis, keys: Keys, slow: bool) -> list[float]:
    path = "/api/sources/cam/events"
    stalled = stalled_viewer(api.port, path) if slow else None
    pub = SourcePublisher(redis, keys, "cam")
    filler = "x" * SSE_TEXT_BYTES
    try:
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=20) as http,
            http.stream("GET", path) as resp,
        ):
            sse = SseReader.of(resp)
            await sse.ready()
            expected = 2 if slow else 1
            await wait_until(lambda: _viewers(http, "sse", expected), timeout=5)

            progress = asyncio.Condition()
            seqs: list[int] = []

            async def publish() -> None:
                # Paced by the fast viewer, not by the clock: at most SSE_IN_FLIGHT ahead of
                # what it received, so a loaded machine cannot overflow its queue, while
                # the stalled viewer (which reads nothing) still falls SSE_MESSAGES behind.
                for seq in range(SSE_MESSAGES):
                    async with progress:
                        await progress.wait_for(lambda s=seq: s - len(seqs) < SSE_IN_FLIGHT)
                    await pub.text(TextChunk(source="cam", cycle="p", seq=seq, text=filler))

            sender = asyncio.create_task(publish())
            latencies = []
            for _ in range(SSE_MESSAGES):
                event = await sse.until("chunk", timeout=20)
                latencies.append(time.time() - event.data["ts"])
                async with progress:
                    seqs.append(event.data["seq"])
                    progress.notify_all()
            await sender
            assert seqs == list(range(SSE_MESSAGES))  # the fast viewer lost nothing
            if slow:
                assert await metric(http, 'lookout_api_dropped_total{kind="sse"}') > 0
        return latencies
    finally:
        if stalled is not None:
            stalled.close()


async def _viewers(http: httpx.AsyncClient, kind: str, expected: int) -> bool:
    return await metric(http, f'lookout_api_viewers{{kind="{kind}"}}') >= expected


async def test_a_stalled_sse_viewer_does_not_delay_a_fast_one(
    server: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    without = await sse_phase(server, redis_client, keys, slow=False)
    with_slow = await sse_phase(server, redis_client, keys, slow=True)
    record("sse", summary(without), summary(with_slow))


def big_jpeg(seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return bytes(buf)


async def mjpeg_phase(
    api: ApiServer, redis: aioredis.Redis, keys: Keys, slow: bool, jpegs: list[bytes]
) -> tuple[list[float], int]:
    path = "/api/sources/cam/mjpeg"
    stalled = stalled_viewer(api.port, path) if slow else None
    try:
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=20) as http,
            http.stream("GET", path) as resp,
        ):
            expected = 2 if slow else 1
            await wait_until(lambda: _viewers(http, "mjpeg", expected), timeout=5)
            start_seq = int(time.time() * 1000)

            async def publish() -> None:
                for n, jpeg in enumerate(jpegs):
                    await add_frame(redis, keys, "cam", start_seq + n, jpeg)
                    await asyncio.sleep(1 / 25)

            sender = asyncio.create_task(publish())
            latencies: list[float] = []
            last_seq, buf = 0, b""
            stream = resp.aiter_bytes()
            async with asyncio.timeout(20):
                while last_seq < start_seq + len(jpegs) - 1:
                    buf += await anext(stream)
                    while (end := buf.find(b"\r\n\r\n")) >= 0:
                        head = buf[:end].decode(errors="replace")
                        fields = dict(
                            line.split(": ", 1) for line in head.splitlines() if ": " in line
                        )
                        size = int(fields.get("Content-Length", "0"))
                        if len(buf) < end + 4 + size + 2:
                            break
                        buf = buf[end + 4 + size + 2 :]
                        seq = int(fields["X-Frame-Seq"])
                        if seq >= start_seq:
                            latencies.append(time.time() - float(fields["X-Frame-Ts"]))
                            last_seq = seq
            await sender
            if stalled is not None:
                # It really was stalled: what it can read now is what the kernel buffered
                # on both ends (a few MB), far from everything the fast viewer read.
                assert drain(stalled) < sum(map(len, jpegs)) // 2
        return latencies, last_seq - start_seq + 1
    finally:
        if stalled is not None:
            stalled.close()


async def test_a_stalled_mjpeg_viewer_does_not_delay_a_fast_one(
    server: ApiServer, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    jpegs = [big_jpeg(i) for i in range(MJPEG_FRAMES)]
    without, n_without = await mjpeg_phase(server, redis_client, keys, False, jpegs)
    with_slow, n_with = await mjpeg_phase(server, redis_client, keys, True, jpegs)
    # The fast viewer reaches the newest frame both times and sees most frames on the way.
    assert n_without == n_with == MJPEG_FRAMES
    assert len(without) >= MJPEG_FRAMES // 2 and len(with_slow) >= MJPEG_FRAMES // 2
    record("mjpeg", summary(without), summary(with_slow))
