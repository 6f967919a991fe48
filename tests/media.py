"""Real test media and real media servers: MP4 files and JPEG frames made by ffmpeg, an HTTP
MJPEG server, and GStreamer's RTSP server (tests/rtsp_server.py) as a subprocess.

Other test modules may import these helpers.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import REPO, free_port, wait_for_port

SYSTEM_PYTHON = "/usr/bin/python3"  # has the GStreamer gi bindings, which a venv lacks


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def _ffmpeg(*args: str) -> None:
    if not have_ffmpeg():
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg)")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=60,
    )


def make_mp4(
    path: Path, seconds: float = 3.0, width: int = 640, height: int = 360, fps: int = 10
) -> Path:
    """An H.264 MP4 of ffmpeg's moving test pattern (testsrc2)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264",
        "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def truncate_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """A copy of `src` cut to `fraction` of its bytes (an MP4 so cut loses its index)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def make_jpegs(count: int = 20, width: int = 640, height: int = 360) -> list[bytes]:
    """`count` JPEG frames of ffmpeg's test pattern, each a complete file."""
    with tempfile.TemporaryDirectory(prefix="lookout-jpegs-") as tmp:
        _ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=10",
            "-frames:v", str(count), "-q:v", "5", f"{tmp}/f%03d.jpg",
        )  # fmt: skip
        return [p.read_bytes() for p in sorted(Path(tmp).glob("f*.jpg"))]


class MjpegServer:
    """A real HTTP server streaming `multipart/x-mixed-replace` JPEG parts at `fps` on
    /stream, that a test can stop (closing open streams) and start again on the same port.
    /stream-nolength sends parts without Content-Length; /plain answers a single JPEG. With
    `auth` ("user:password") every request needs that HTTP Basic authorization."""

    BOUNDARY = "lookoutframe"

    def __init__(
        self, frames: list[bytes], fps: float = 20.0, port: int | None = None, auth: str = ""
    ) -> None:
        self.frames = frames
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode() if auth else ""
        self.fps = fps
        self.port = port or free_port()
        self.parts_sent = 0
        self._stopping = threading.Event()
        self.paused = threading.Event()  # set: streams stay open but send nothing (a stall)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/stream") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> MjpegServer:
        owner = self
        self._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if owner.auth and self.headers.get("Authorization") != owner.auth:
                    self.send_error(401, "Unauthorized")
                    return
                if self.path == "/plain":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    self.wfile.write(owner.frames[0])
                    return
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={owner.BOUNDARY}"
                )
                self.end_headers()
                owner._stream(self, with_length=self.path != "/stream-nolength")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _stream(self, handler: BaseHTTPRequestHandler, *, with_length: bool) -> None:
        index = 0
        try:
            while not self._stopping.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                frame = self.frames[index % len(self.frames)]
                head = f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                if with_length:
                    head += f"Content-Length: {len(frame)}\r\n"
                handler.wfile.write(head.encode() + b"\r\n" + frame + b"\r\n")
                handler.wfile.flush()
                self.parts_sent += 1
                index += 1
                time.sleep(1.0 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def stop(self) -> None:
        """Stop serving and end every open stream (the client sees the connection close)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None


class SilentServer:
    """A TCP port that accepts connections and never answers: a URL that times out."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()


class RtspServer:
    """GStreamer's RTSP server (tests/rtsp_server.py) run by the system Python."""

    def __init__(self, port: int | None = None, fps: int = 10) -> None:
        self.port = port or free_port()
        self.fps = fps
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    @staticmethod
    def available() -> bool:
        probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
        try:
            done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def start(self) -> RtspServer:
        script = str(REPO / "tests" / "rtsp_server.py")
        args = ["--port", str(self.port), "--fps", str(self.fps)]
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, script, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=20)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
