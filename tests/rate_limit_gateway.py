"""A STAND-IN rate-limiting gateway for tests, in front of a real OpenAI-compatible server.

Hosted APIs and gateways in front of vLLM (LiteLLM, nginx `limit_req`, API gateways) answer
too many requests with `429 Too Many Requests`, often with `Retry-After`, and an OpenAI-style
error body. `transformers serve` never does, so this small real HTTP server does it: it
refuses the first REFUSE `POST`s to `/v1/chat/completions` with a 429 (and `Retry-After:
SECONDS` when SECONDS is not `-`), and passes every other request through to UPSTREAM,
streaming the answer back as it comes. Every request is appended to LOG as a JSON line (time,
method, path, the status it got), so a test sees what the client did and when.

Run as `python -m tests.rate_limit_gateway PORT UPSTREAM REFUSE SECONDS LOG`;
`RateLimitGateway` runs it.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import REPO, free_port, wait_healthy

CHAT = "/v1/chat/completions"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = urllib.parse.urlsplit("http://127.0.0.1:1")
    refuse = 0
    retry_after = "-"
    log_path = Path("/dev/null")
    refused = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # quiet: the test reads LOG

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, b'{"status":"ok"}', {})
        else:
            self._forward(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == CHAT and Handler.refused < self.refuse:
            Handler.refused += 1
            extra = {} if self.retry_after == "-" else {"Retry-After": self.retry_after}
            error = {"error": {"message": "Rate limit reached: too many requests"}}
            self._reply(429, json.dumps(error).encode(), extra)
            return
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        answer = conn.getresponse()
        self._note(answer.status)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while piece := answer.read1(65536):  # as the upstream streams it
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        conn.close()

    def _reply(self, status: int, body: bytes, extra: dict[str, str]) -> None:
        self._note(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _note(self, status: int) -> None:
        entry = {"t": time.time(), "method": self.command, "path": self.path, "status": status}
        with self.log_path.open("a") as log:
            log.write(json.dumps(entry) + "\n")


def main(argv: list[str]) -> None:
    port, upstream, refuse, retry_after, log = argv
    Handler.upstream = urllib.parse.urlsplit(upstream)
    Handler.refuse = int(refuse)
    Handler.retry_after = retry_after
    Handler.log_path = Path(log)
    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


class RateLimitGateway:
    """The gateway as a real process in front of `upstream` (a base URL ending in /v1)."""

    def __init__(self, upstream: str, log: Path, refuse: int, retry_after: str = "-") -> None:
        self.port = free_port()
        self.log_path = log
        root = upstream.removesuffix("/v1")
        args = [str(self.port), root, str(refuse), retry_after, str(log)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.rate_limit_gateway", *args], cwd=REPO
        )
        if why := wait_healthy(f"http://127.0.0.1:{self.port}/health", self.proc, 30):
            self.stop()
            raise RuntimeError(f"the rate-limiting gateway did not start: {why}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self, path: str = CHAT) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        return [entry for entry in map(json.loads, lines) if entry["path"] == path]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
