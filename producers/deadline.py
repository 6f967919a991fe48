"""An overall deadline for a camera's HTTP connection, kept by a thread of its own.

httpx bounds each socket read, not a whole response: a camera trickling one byte at a time
would reset that timeout forever, and a read that timed out cannot be resumed (httpcore
closes the connection). So the MJPEG reader arms a `Watchdog` with a deadline (OPEN_TIMEOUT
for connecting and the response headers, STALL_TIMEOUT for each part); when it passes, the
watchdog shuts the connection's socket down, which ends a read blocked in any thread.
It learns each socket through httpx's `trace` request extension.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

WATCHED_EVENTS = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class Watchdog:
    """Shuts the watched socket down once the armed deadline passes (thread-safe)."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._deadline = math.inf
        self._socket: socket.socket | None = None
        self._closed = False
        self.expired = False  # the deadline passed: the connection was cut, for good
        threading.Thread(target=self._run, name=f"deadline-{name}", daemon=True).start()

    def arm(self, seconds: float) -> None:
        """Cut the connection unless disarmed or re-armed within `seconds`."""
        with self._cond:
            deadline = time.monotonic() + seconds
            if deadline < self._deadline:  # a later one is noticed when the earlier one passes
                self._cond.notify()
            self._deadline = deadline

    def disarm(self) -> None:
        """No deadline until armed again (between reads: the camera is not being waited on)."""
        with self._cond:
            self._deadline = math.inf

    def left(self) -> float:
        """Seconds until the deadline (a little more than none once it passed)."""
        return max(0.001, min(self._deadline - time.monotonic(), 1e9))

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's `trace` extension: watch each connection as soon as it is made."""
        if event not in WATCHED_EVENTS:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._cond:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self.expired or self._closed:
                _shutdown(self._socket)

    def cut(self) -> None:
        """End a read blocked on the watched socket now (from any thread)."""
        with self._cond:
            _shutdown(self._socket)

    def close(self) -> None:
        """Cut the connection and end the watchdog's thread."""
        with self._cond:
            self._closed = True
            _shutdown(self._socket)
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(None if math.isinf(left) else left)
                    continue
                self.expired = True
                self._deadline = math.inf
                _shutdown(self._socket)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:  # wakes a recv blocked in another thread (close() alone would not)
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
