"""Clients for end-to-end tests: an SSE reader and an MJPEG part reader over real HTTP."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.media import _ffmpeg


def make_red_box_clip(path: Path, seconds: float = 6.0) -> Path:
    """A clip the CPU engine can describe: a red square moving right over a blue background."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"color=c=0x1040c0:s=640x360:r=10:d={seconds}",
        "-f", "lavfi", "-i", f"color=c=red:s=100x100:r=10:d={seconds}",
        "-filter_complex", "[0][1]overlay=x='20+mod(t*150\\,520)':y=130",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: Any
    id: str | None
    received: float  # time.time() when the client read it


class SseReader:
    """Reads an SSE stream in a thread; events wait in a queue for `next_matching`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.error: httpx.HTTPError | None = None  # what ended the stream early, if anything
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        # Kept, not raised: a test that failed before close() tears its API down under this
        # thread, and an exception here would then be reported as a second, unrelated error.
        try:
            self._read(url, headers)
        except httpx.HTTPError as exc:
            if not self._stop.is_set():  # after close() the server may go first: expected
                self.error = exc

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=httpx.Timeout(5.0, read=None)) as client:
            with client.stream("GET", url, headers=headers) as response:
                response.raise_for_status()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == ": ready":
                        self.ready.set()
                    if line.startswith(":"):
                        continue
                    if line == "":
                        if "data" in fields:
                            self.events.put(
                                SseEvent(
                                    fields.get("event", "message"),
                                    json.loads(fields["data"]),
                                    fields.get("id"),
                                    time.time(),
                                )
                            )
                        fields = {}
                        continue
                    name, _, value = line.partition(": ")
                    fields[name] = value

    def next_matching(self, match: Callable[[SseEvent], bool], timeout: float) -> SseEvent:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching SSE event in time (stream error: {self.error!r})")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event

    def close(self) -> None:
        self._stop.set()


def mjpeg_parts(url: str, count: int, timeout: float = 20.0) -> list[bytes]:
    """The first `count` JPEG parts of a multipart/x-mixed-replace stream."""
    parts: list[bytes] = []
    with httpx.stream("GET", url, timeout=timeout) as response:
        response.raise_for_status()
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for data in response.iter_bytes():
            found, buffer = split_jpegs(buffer + data)
            parts.extend(found)
            if len(parts) >= count:
                return parts[:count]
    return parts


def split_jpegs(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete JPEGs (FF D8 FF ... FF D9) in `buffer`, and the bytes after the last one."""
    found: list[bytes] = []
    start = 0
    while (begin := buffer.find(b"\xff\xd8\xff", start)) >= 0:
        end = buffer.find(b"\xff\xd9", begin)
        if end < 0:
            return found, buffer[begin:]
        found.append(buffer[begin : end + 2])
        start = end + 2
    return found, buffer[start:]
