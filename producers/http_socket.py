"""Sockets for the MJPEG reader whose every read is bounded by an overall deadline.

A socket timeout alone would not do: a camera trickling one byte at a time resets it forever.
`DeadlineSocket` gives http.client a file whose reads each get only the time left until
`io.deadline`, and `shutdown()` wakes a read blocked in another thread.
"""

from __future__ import annotations

import io
import math
import socket
import ssl
import time


class DeadlineIO(io.RawIOBase):
    """Reads of a socket, each bounded by the time left until `deadline` (monotonic)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class DeadlineSocket:
    """The part of a socket http.client uses, with reads bounded by a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.io = DeadlineIO(sock)

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(max(0.001, self.io.deadline - time.monotonic()))
        self.sock.sendall(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self.io)

    def shutdown(self) -> None:
        try:  # wakes a recv blocked in another thread (close() alone would not)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        # http.client closes its socket once a response says it will close (HTTP/1.0, as most
        # cameras answer) and reads on from the response: the reader's close() frees it.
        pass

    def release(self) -> None:
        self.sock.close()


def connect(
    host: str, port: int, addresses: tuple[str, ...], https: bool, deadline: float
) -> DeadlineSocket:
    """A socket to `host`, through one of the checked `addresses` when there are some."""
    timeout = max(0.001, deadline - time.monotonic())
    errors: list[str] = []
    for address in addresses or (host,):
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
            break
        except OSError as exc:
            errors.append(f"{address}: {exc}")
    else:
        raise OSError("; ".join(errors))
    if https:
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError:
            sock.close()
            raise
    return DeadlineSocket(sock)
