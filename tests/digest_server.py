"""A real HTTP camera that wants Digest authentication (RFC 7616), as many IP cameras do.

Serves MJPEG on /stream, one JPEG on /plain, a redirect to /stream on /moved and one to
`elsewhere` (another origin) on /away. Answers a request without valid Digest credentials
with 401 and a `WWW-Authenticate: Digest` challenge (or, with scheme="Basic", a Basic one).
Its check is written here from the RFC, apart from httpx's code that the reader uses.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers import free_port

BOUNDARY = "digestcam"


class DigestCamera:
    def __init__(
        self,
        frames: list[bytes],
        user: str,
        password: str,
        algorithm: str = "MD5",
        scheme: str = "Digest",
    ) -> None:
        self.frames, self.user, self.password, self.algorithm = frames, user, password, algorithm
        self.scheme = scheme
        self.endless_401 = False  # a 401 whose body never ends
        self.realm = "Lookout test camera"
        self.nonce = secrets.token_hex(16)
        self.opaque = secrets.token_hex(8)
        self.port = free_port()
        self.authorizations: list[str] = []  # every Authorization header received
        self.requests: list[tuple[str, str, str]] = []  # (Host, path, Authorization or "")
        self.elsewhere = ""  # where /away redirects to
        self.parts_sent = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/stream", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"http://{self.user}:{secret}@127.0.0.1:{self.port}{path}"

    def _hash(self, text: str) -> str:
        name = "sha256" if self.algorithm.upper().startswith("SHA-256") else "md5"
        return hashlib.new(name, text.encode()).hexdigest()

    def challenge(self) -> str:
        if self.scheme == "Basic":
            return f'Basic realm="{self.realm}"'
        return (
            f'Digest realm="{self.realm}", qop="auth", algorithm={self.algorithm}, '
            f'nonce="{self.nonce}", opaque="{self.opaque}"'
        )

    def authorized(self, header: str, method: str, path: str) -> bool:
        if self.scheme == "Basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return secrets.compare_digest(header, f"Basic {token}")
        if not header.startswith("Digest "):
            return False
        p = {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header)}
        if (p.get("username"), p.get("realm"), p.get("nonce")) != (
            self.user,
            self.realm,
            self.nonce,
        ):
            return False
        if p.get("uri") != path or p.get("opaque") != self.opaque or p.get("qop") != "auth":
            return False
        ha1 = self._hash(f"{self.user}:{self.realm}:{self.password}")
        if self.algorithm.upper().endswith("-SESS"):
            ha1 = self._hash(f"{ha1}:{self.nonce}:{p.get('cnonce')}")
        ha2 = self._hash(f"{method}:{path}")
        expected = self._hash(f"{ha1}:{self.nonce}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}")
        return secrets.compare_digest(expected, p.get("response", ""))

    def start(self) -> DigestCamera:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                header = self.headers.get("Authorization", "")
                owner.requests.append((self.headers.get("Host", ""), self.path, header))
                if header:
                    owner.authorizations.append(header)
                if not owner.authorized(header, "GET", self.path):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", owner.challenge())
                    if owner.endless_401:
                        self.end_headers()
                        owner.endless(self)
                        return
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in ("/moved", "/away"):
                    self.send_response(302)
                    self.send_header(
                        "Location", "/stream" if self.path == "/moved" else owner.elsewhere
                    )
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/plain":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(owner.frames[0])))
                    self.end_headers()
                    self.wfile.write(owner.frames[0])
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                owner.stream(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stream(self, handler: BaseHTTPRequestHandler) -> None:
        index = 0
        try:
            while not self._stopping.is_set():
                frame = self.frames[index % len(self.frames)]
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
                handler.wfile.write(head.encode() + frame + b"\r\n")
                handler.wfile.flush()
                self.parts_sent += 1
                index += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def endless(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            while not self._stopping.is_set():
                handler.wfile.write(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
