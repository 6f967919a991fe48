"""A camera that trickles bytes (headers, then one byte every 0.5 s) cannot hold a reader: each
part has an overall deadline, so every reconnect ends the old connection and its thread, and
open connections and capture threads stay flat over many reconnects. Trickled response
headers meet the opening deadline, and `interrupt()` ends a read blocked in another thread."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from producers.capture import Capture
from producers.mjpeg import MjpegReader
from producers.readers import EndOfStream, ReaderConfig, SourceOpenError
from shared.producer_status import read_producer_status
from shared.settings_env import load_settings
from shared.urlpolicy import SourcePolicy

HEADERS = (
    b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
    b"--frame\r\nContent-Type: image/jpeg\r\n\r\n"
)
TRICKLE_EVERY_S = 0.5


class TrickleServer:
    """A real HTTP server on 127.0.0.1 that answers a stream's headers, then one byte of a
    JPEG that never ends every TRICKLE_EVERY_S. It counts connections the client still holds."""

    def __init__(self, start: bytes = HEADERS + b"\xff\xd8", byte: bytes = b"\x00") -> None:
        self.start, self.byte = start, byte
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(4096)  # the request
            conn.sendall(self.start)
            while not self._stopping.is_set():
                readable, _, _ = select.select([conn], [], [], TRICKLE_EVERY_S)
                if readable and not conn.recv(4096):
                    return  # the client closed its end
                conn.sendall(self.byte)
        except OSError:
            return
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def stop(self) -> None:
        self._stopping.set()
        self.sock.close()


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    server = TrickleServer()
    yield server
    server.stop()


def test_trickled_response_headers_meet_the_opening_deadline() -> None:
    server = TrickleServer(b"HTTP/1.0 200 OK\r\nX-Slow: ", b"a")  # a header that never ends
    config = ReaderConfig(5, "tcp", 1, 1, 2_000_000, 10_000_000)  # OPEN_TIMEOUT 1 s
    try:
        started = time.monotonic()
        with pytest.raises(SourceOpenError, match="cannot open MJPEG stream"):
            MjpegReader(f"http://127.0.0.1:{server.port}/stream", config, None)
        assert time.monotonic() - started < 3  # bytes kept arriving; the deadline ended it
        assert server.accepted == 1
    finally:
        server.stop()


def test_interrupt_ends_a_read_blocked_in_another_thread(trickle: TrickleServer) -> None:
    config = ReaderConfig(5, "tcp", 5, 60, 2_000_000, 10_000_000)  # a read may wait 60 s
    reader = MjpegReader(f"http://127.0.0.1:{trickle.port}/stream", config, None)
    ended: list[BaseException] = []

    def read() -> None:
        try:
            reader.read()
        except EndOfStream as exc:
            ended.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        time.sleep(1)  # several trickled bytes into the part
        assert thread.is_alive()
        reader.interrupt()
        thread.join(5)
        assert not thread.is_alive() and ended, "interrupt() did not end the read"
        assert "read timeout" not in str(ended[0])  # cut by interrupt(), not by a deadline
    finally:
        reader.close()
        thread.join(5)


def capture_threads(name: str) -> int:
    return sum(t.name.startswith(f"capture-{name}") for t in threading.enumerate())


def deadline_threads() -> int:
    return sum(t.name.startswith("deadline-") for t in threading.enumerate())


async def _until(check: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


@pytest.mark.slow
async def test_a_trickling_camera_leaks_no_connection_or_thread(
    redis_client: aioredis.Redis, test_env: dict[str, str], trickle: TrickleServer
) -> None:
    fast = {
        "STALL_TIMEOUT": "1",
        "OPEN_TIMEOUT": "1",
        "RECONNECT_DELAY": "0.05",
        "MAX_RECONNECT_DELAY": "0.1",
        "SOURCE_ALLOW_LOOPBACK": "true",
    }
    settings = load_settings({**test_env, **fast}, env_file=None)
    capture = Capture(
        redis_client,
        settings,
        "trickle",
        f"http://127.0.0.1:{trickle.port}/stream",
        policy=SourcePolicy.from_settings(settings),
    )
    task = asyncio.create_task(capture.run())
    peak_open = peak_threads = 0

    def reconnected_often() -> bool:
        nonlocal peak_open, peak_threads
        peak_open = max(peak_open, trickle.open)
        peak_threads = max(peak_threads, capture_threads("trickle"))
        return trickle.accepted >= 10

    try:
        await _until(reconnected_often, 60, "ten reconnects")
    finally:
        capture.stop.set()
        await asyncio.wait_for(task, 15)
    # One connection and one thread at a time (two while one hands over to the next).
    assert peak_open <= 2 and peak_threads <= 2, (peak_open, peak_threads)
    status = await read_producer_status(redis_client, settings, "trickle")
    assert status is not None, "no producer status"
    assert "no whole MJPEG part within the read timeout" in status.error, status
    await _until(lambda: trickle.open == 0, 10, "the last connection closed")
    await _until(lambda: capture_threads("trickle") == 0, 10, "the capture threads gone")
    await _until(lambda: deadline_threads() == 0, 10, "the readers' watchdog threads gone")
