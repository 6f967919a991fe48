"""A reader of HTTP multipart MJPEG streams (`multipart/x-mixed-replace`), as phone camera apps
and older IP cameras serve them.

Our own small parser rather than OpenCV's FFmpeg backend: every part is checked with
`shared.jpeg` before decoding (a truncated part must not become a frame patched from an
earlier one), and a camera cannot hold a reader. A socket timeout alone would not do: a
server trickling one byte at a time resets it forever. So every socket read is bounded by an
overall deadline (OPEN_TIMEOUT for connecting and the response headers, STALL_TIMEOUT for each
part), parts are bounded by MAX_FRAME_BYTES, and `interrupt()` shuts the socket from any
thread, so an abandoned reader's thread returns at once.

With a `SourcePolicy`, the reader connects only to addresses the policy checked, and checks
every redirect (at most MAX_REDIRECTS) again. Opening errors are one message whatever went
wrong (refused, timed out, not HTTP, not MJPEG), so they reveal nothing about the ports of
other hosts; the log has the details.
"""

from __future__ import annotations

import base64
import http.client
import io
import logging
import math
import socket
import ssl
import time
from urllib.parse import unquote, urljoin, urlsplit

from producers.readers import EndOfStream, Image, ReaderConfig, SourceOpenError
from producers.sources import redact_url
from shared.jpeg import JpegError, decode_jpeg
from shared.urlpolicy import CheckedSource, SourcePolicyError, check_source_url

log = logging.getLogger(__name__)

MAX_HEADER_LINE = 4096
MAX_PART_HEADERS = 32
MAX_REDIRECTS = 3
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class _DeadlineIO(io.RawIOBase):
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


class _DeadlineSocket:
    """The part of a socket http.client uses, with reads bounded by a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.io = _DeadlineIO(sock)

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


class MjpegReader:
    """Reads JPEG parts one by one from an open multipart HTTP response (blocking)."""

    eof = False
    frame_interval = 0.0  # a live source: frames come as fast as the server sends them
    last_jpeg: bytes | None = None  # the bytes of the frame read() returned last

    def __init__(self, url: str, config: ReaderConfig, checked: CheckedSource | None) -> None:
        self._config = config
        self._shown = redact_url(url)
        self._sock: _DeadlineSocket | None = None
        self._conn: http.client.HTTPConnection | None = None
        try:
            self._resp = self._open(url, checked)
            self._boundary = self._check_response()
        except SourceOpenError:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            log.info("%s: %s", self._shown, exc)
            raise SourceOpenError(
                f"cannot open MJPEG stream {self._shown!r} "
                "(unreachable, refused, timed out, or not an MJPEG stream)"
            ) from None
        self._in_headers = False  # True once the boundary line of the next part was consumed

    def _open(self, url: str, checked: CheckedSource | None) -> http.client.HTTPResponse:
        deadline = time.monotonic() + self._config.open_timeout
        auth = _basic_auth(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._request(url, checked, auth, deadline)
            location = resp.getheader("Location")
            if resp.status not in REDIRECT_STATUSES or not location:
                return resp
            self.close()
            target = urljoin(url, location)
            if urlsplit(target)[:2] != urlsplit(url)[:2]:
                auth = None  # credentials go to the host they were written for only
            url, checked = target, self._check_redirect(target)
        raise OSError(f"more than {MAX_REDIRECTS} redirects")

    def _check_redirect(self, url: str) -> CheckedSource | None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceOpenError(f"{self._shown} redirects to a scheme other than http(s)")
        if self._config.policy is None:
            return None
        try:
            return check_source_url(url, self._config.policy, resolve=True)
        except SourcePolicyError as exc:
            raise SourceOpenError(f"{self._shown} redirects: {exc}", permanent=True) from None

    def _request(
        self, url: str, checked: CheckedSource | None, auth: str | None, deadline: float
    ) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        conn_type = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = conn_type(parts.hostname or "", port)  # sets the Host header; we connect
        self._conn = conn
        addresses = checked.addresses if checked is not None else ()
        self._sock = _connect(parts.hostname or "", port, addresses, https, deadline)
        self._sock.io.deadline = deadline
        conn.sock = self._sock
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept": "multipart/x-mixed-replace"}
        if auth is not None:  # http://user:pass@cam/... as IP cameras expect
            headers["Authorization"] = auth
        conn.request("GET", path, headers=headers)
        return conn.getresponse()

    def _check_response(self) -> bytes:
        resp = self._resp
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status} {resp.reason}")
        content_type = resp.getheader("Content-Type", "")
        if not content_type.lower().startswith("multipart/"):
            raise OSError(f"Content-Type {content_type!r}, expected multipart/x-mixed-replace")
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                return value.strip('"').lstrip("-").encode()
        raise OSError("multipart Content-Type without a boundary")

    def read(self) -> Image | None:
        """The next frame; None for a part that is not a valid JPEG; EndOfStream when the
        server closed the stream or sent no whole part within the read timeout."""
        assert self._sock is not None
        self._sock.io.deadline = time.monotonic() + self._config.read_timeout
        try:
            data = self._next_part()
        except TimeoutError:
            raise EndOfStream("no whole MJPEG part within the read timeout") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EndOfStream(f"MJPEG stream broke: {exc}") from None
        try:
            image = decode_jpeg(data, self._config.max_bytes, max_pixels=self._config.max_pixels)
            self.last_jpeg = data
            return image
        except JpegError as exc:
            log.debug("skipped an MJPEG part: %s", exc)
            return None

    def _line(self) -> bytes:
        line = self._resp.readline(MAX_HEADER_LINE)
        if not line:
            raise EndOfStream("the MJPEG server closed the stream")
        return line

    def _is_boundary(self, line: bytes) -> bool:
        # Servers disagree on whether the boundary parameter includes the leading dashes.
        return line.strip().lstrip(b"-") in (self._boundary, self._boundary + b"--")

    def _next_part(self) -> bytes:
        if not self._in_headers:
            while not self._is_boundary(self._line()):
                pass
        self._in_headers = False
        length: int | None = None
        for _ in range(MAX_PART_HEADERS):
            line = self._line()
            if not line.strip():
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        limit = self._config.max_bytes
        if length is not None:
            if length > limit:
                raise EndOfStream(f"MJPEG part of {length} bytes exceeds {limit}")
            data = self._resp.read(length)
            if len(data) < length:
                raise EndOfStream("the MJPEG server closed the stream mid-frame")
            return data
        return self._read_until_boundary(limit)

    def _read_until_boundary(self, limit: int) -> bytes:
        # Without Content-Length the part ends at the next boundary line.
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._resp.readline(limit + 1)
            if not line:
                raise EndOfStream("the MJPEG server closed the stream")
            if self._is_boundary(line):
                self._in_headers = True
                return b"".join(chunks).removesuffix(b"\r\n").removesuffix(b"\n")
            chunks.append(line)
            size += len(line)
            if size > limit:
                raise EndOfStream(f"MJPEG part exceeds {limit} bytes")

    def interrupt(self) -> None:
        """Make a read blocked in another thread return now (thread-safe)."""
        if self._sock is not None:
            self._sock.shutdown()

    def close(self) -> None:
        self.interrupt()
        if self._conn is not None:
            self._conn.close()
        if self._sock is not None:
            self._sock.release()


def _basic_auth(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.username is None:
        return None
    token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(token.encode()).decode()


def _connect(
    host: str, port: int, addresses: tuple[str, ...], https: bool, deadline: float
) -> _DeadlineSocket:
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
    return _DeadlineSocket(sock)
