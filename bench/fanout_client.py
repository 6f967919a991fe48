"""The viewers of bench/fanout.py: N raw HTTP readers of one stream kind in one process.

Started by bench/fanout.py as a process of its own (so the viewers never share the API's
event loop), it opens N connections to `/events`, `/mjpeg` or `/audio` of one source, plus the
floor: one direct Redis reader of the same messages (pub/sub for text and speech, XREAD for
frames). It prints `ready N` once every viewer is connected, then answers commands on stdin:
`count` prints how many messages all viewers have received so far (so the bench can wait for
the last ones in flight), `stop` prints one JSON line: messages received per viewer and
publish→receive latencies.

The client must cost less than the API it measures, so most viewers only count messages
(`bytes.count` of a marker each message carries, in C); one viewer in `--sample` also parses
each message's publish time for the latency: HTTP chunked framing undone by hand, SSE `"ts":`
values found with one regex, MJPEG parts skipped by their Content-Length, PCM chunks
carrying their publish time in their first 8 bytes (bench/fanout.py writes them so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis  # noqa: E402

from shared.keys import Keys  # noqa: E402
from shared.messages import decode_message  # noqa: E402
from shared.records import FrameRecord  # noqa: E402

PCM_CHUNK = 9600  # bytes of each speech chunk bench/fanout.py publishes (100 ms at 48 kHz)
PCM_MARK = b"LOOKOUT!"  # after the publish time in each chunk: what counting viewers count
# What a counting viewer counts, once per message (found by bytes.count, in C).
MARKS = {"sse": b"event: chunk", "mjpeg": b"X-Frame-Ts: ", "pcm": PCM_MARK}
TS_RE = re.compile(rb'"ts":([0-9.]+)[,}]')
PATHS = {"sse": "/events", "mjpeg": "/mjpeg", "pcm": "/audio"}


class Tally:
    """What all viewers of this process received: counts per viewer, latencies (s)."""

    def __init__(self) -> None:
        self.latency = array("d")
        self.counts: list[int] = []
        self.failed = 0


class _Stream(asyncio.Protocol):
    """An HTTP stream request on one connection: the response head, then the body to `_body`."""

    def __init__(self, kind: str, request: bytes, tally: Tally, index: int) -> None:
        self.kind = kind
        self.request = request
        self.tally = tally
        self.index = index
        self.ready = asyncio.get_running_loop().create_future()
        self.head = b""  # response head until its blank line
        self.in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the stream started"))

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(ConnectionError(self.head[:80].decode(errors="replace")))
                return
            data, self.head, self.in_body = self.head[end + 4 :], b"", True
            if self.kind != "sse":  # an SSE stream is ready at its ": ready" comment
                self.ready.set_result(None)
        self._body(data)

    def _body(self, data: bytes) -> None:
        raise NotImplementedError


class CountingViewer(_Stream):
    """An HTTP stream reader that only counts the messages it receives."""

    def __init__(self, kind: str, request: bytes, tally: Tally, index: int) -> None:
        super().__init__(kind, request, tally, index)
        self.mark = MARKS[kind]
        self.tail = b""  # a marker may span two reads

    def _body(self, data: bytes) -> None:
        if not self.ready.done() and b": ready" in data:
            self.ready.set_result(None)
        k = len(self.mark) - 1
        found = data.count(self.mark) + (self.tail + data[:k]).count(self.mark)
        self.tail = (self.tail + data)[-k:] if len(data) < k else data[-k:]
        if found:
            self.tally.counts[self.index] += found


class Viewer(_Stream):
    """One HTTP stream reader: response head, chunked framing, then the kind's body parser."""

    def __init__(self, kind: str, request: bytes, tally: Tally, index: int) -> None:
        super().__init__(kind, request, tally, index)
        self.size_line = b""
        self.remaining = 0  # bytes left in the current HTTP chunk
        self.skip_crlf = 0
        self.carry = b""  # body bytes a parser keeps between reads
        self.part_left = 0  # MJPEG: bytes of the current part's JPEG (+ CRLF) to skip
        self.pcm_offset = 0

    def _body(self, data: bytes) -> None:
        self._dechunk(data)

    def _dechunk(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                self._payload(data[pos : pos + take] if take < n else data)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.skip_crlf = 2
            elif self.skip_crlf:
                take = min(self.skip_crlf, n - pos)
                pos += take
                self.skip_crlf -= take
            else:
                end = data.find(b"\r\n", pos)
                if end < 0:
                    self.size_line += data[pos:]
                    return
                self.remaining = int(self.size_line + data[pos:end], 16)
                self.size_line = b""
                pos = end + 2

    def _payload(self, data: bytes) -> None:
        """The stream's own bytes (HTTP chunk framing removed), parsed by kind."""
        now = time.time()
        if self.kind == "sse":
            self._sse(data, now)
        elif self.kind == "mjpeg":
            self._mjpeg(data, now)
        else:
            self._pcm(data, now)

    def _sse(self, data: bytes, now: float) -> None:
        seg = self.carry + data
        last = 0
        for match in TS_RE.finditer(seg):
            self.tally.latency.append(now - float(match.group(1)))
            self.tally.counts[self.index] += 1
            last = match.end()
        if not self.ready.done() and b": ready" in seg:
            self.ready.set_result(None)
        self.carry = seg[max(last, len(seg) - 64) :]

    def _mjpeg(self, data: bytes, now: float) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self.part_left:
                take = min(self.part_left, n - pos)
                pos += take
                self.part_left -= take
                continue
            self.carry += data[pos:]
            end = self.carry.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.carry[:end]
            pos = n - (len(self.carry) - end - 4)  # where the JPEG starts in `data`
            self.carry = b""
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            ts = float(re.search(rb"X-Frame-Ts: ([0-9.]+)", head).group(1))  # type: ignore[union-attr]
            self.tally.latency.append(now - ts)
            self.tally.counts[self.index] += 1
            self.part_left = length + 2

    def _pcm(self, data: bytes, now: float) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self.pcm_offset < 8:  # the publish time at the start of each chunk
                take = min(8 - self.pcm_offset, n - pos)
                self.carry += data[pos : pos + take]
                if len(self.carry) == 8:
                    self.tally.latency.append(now - struct.unpack("<d", self.carry)[0])
                    self.tally.counts[self.index] += 1
                    self.carry = b""
            else:
                take = min(PCM_CHUNK - self.pcm_offset, n - pos)
            pos += take
            self.pcm_offset = (self.pcm_offset + take) % PCM_CHUNK


async def floor(kind: str, redis_url: str, keys: Keys, source: str, tally: Tally) -> None:
    """The floor: one direct Redis reader of what the viewers get, in this same process."""
    redis = aioredis.Redis.from_url(redis_url)
    tally.counts.append(0)
    try:
        if kind == "mjpeg":
            last = "$"
            while True:
                reply = await redis.xread({keys.frames(source): last}, count=10, block=1000)
                now = time.time()
                for _stream, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        tally.latency.append(now - FrameRecord.from_fields(fields).ts)
                        tally.counts[0] += 1
        channel = keys.text_channel(source) if kind == "sse" else keys.audio_channel(source)
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            async for raw in pubsub.listen():
                if raw["type"] == "message":
                    tally.latency.append(time.time() - decode_message(raw["data"]).ts)
                    tally.counts[0] += 1
    finally:
        await redis.aclose()


def summary(tally: Tally) -> dict[str, object]:
    lat = sorted(tally.latency)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 2) if lat else None

    return {
        "received": sum(tally.counts),
        "min_per_viewer": min(tally.counts) if tally.counts else 0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "failed": tally.failed,
    }


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=sorted(PATHS), required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--viewers", type=int, required=True)
    p.add_argument("--source", default="cam")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--key-prefix", required=True)
    p.add_argument("--sample", type=int, default=10, help="one viewer in N measures latency")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    path = f"/api/sources/{args.source}{PATHS[args.kind]}"
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    tally, floor_tally = Tally(), Tally()
    tally.counts = [0] * args.viewers
    floor_task = asyncio.create_task(
        floor(args.kind, args.redis_url, Keys(args.key_prefix), args.source, floor_tally)
    )
    gate = asyncio.Semaphore(64)  # connects in flight: stay under the listen backlog
    transports: list[asyncio.BaseTransport] = []

    async def connect(i: int) -> None:
        async with gate:
            try:
                kind = Viewer if i % args.sample == 0 else CountingViewer
                transport, viewer = await loop.create_connection(
                    lambda: kind(args.kind, request, tally, i), "127.0.0.1", args.port
                )
                transports.append(transport)
                await asyncio.wait_for(viewer.ready, 60)
            except (OSError, TimeoutError) as exc:
                tally.failed += 1
                print(f"viewer {i}: {exc!r}", file=sys.stderr)

    await asyncio.gather(*(connect(i) for i in range(args.viewers)))
    print(f"ready {args.viewers - tally.failed}", flush=True)
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "count":
        print(sum(tally.counts), flush=True)
    floor_task.cancel()
    result = {"viewers": summary(tally), "floor": summary(floor_tally)}
    print(json.dumps(result), flush=True)
    for transport in transports:
        transport.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
