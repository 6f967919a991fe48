"""A STAND-IN TTS server for tests: OpenAI's `POST /v1/audio/speech`, spoken by espeak-ng.

No real OpenAI-style TTS server can be installed here (`transformers serve` 5.23.0 has no
`/v1/audio/speech`; Kokoro-FastAPI, openedai-speech and vLLM-Omni need model downloads), so
this small real HTTP server speaks the wire as OpenAI documents it: a JSON body `{model,
input, voice, response_format, speed}`, `Authorization: Bearer KEY`, the audio as the
response body (chunked, as OpenAI streams it), errors as `{"error": {"message": ...}}`.
`wav` is espeak-ng's own WAV (22.05 kHz, a streaming header with a placeholder length, as
OpenAI's and Kokoro's streamed WAVs have); `pcm` is raw 24 kHz s16le, OpenAI's `pcm`. Other
formats (mp3, opus, aac, flac) are answered 400 here.

Run as `python -m tests.tts_standin PORT KEY FAULT LOG`: KEY `-` takes any key; FAULT is
`none`, or one way for it to misbehave (`error500`, `html`, `oversize`, `hang`); every request
is appended to LOG as a JSON line, so a test can see what was asked. `TtsStandIn` runs it.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import REPO, free_port, wait_healthy

FAULTS = ("none", "error500", "html", "oversize", "hang")
OPENAI_PCM_RATE = 24_000
MAX_INPUT = 4096  # characters, OpenAI's limit


def espeak_wav(text: str) -> bytes:
    done = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en"], input=text.encode(), capture_output=True, check=True
    )
    return done.stdout


def wav_to_pcm24k(wav: bytes) -> bytes:
    import numpy as np  # only the `pcm` format needs it

    data_at = wav.index(b"data") + 8
    samples = np.frombuffer(wav[data_at : data_at + (len(wav) - data_at) // 2 * 2], "<i2")
    rate = int.from_bytes(wav[24:28], "little")
    count = round(len(samples) * OPENAI_PCM_RATE / rate)
    at = np.linspace(0, len(samples) - 1, count)
    resampled = np.interp(at, np.arange(len(samples)), samples.astype(np.float64))
    return bytes(resampled.round().astype("<i2").tobytes())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    key = "-"
    fault = "none"
    log_path = Path(os.devnull)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # quiet: the test reads LOG, not an access log

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, "application/json", b'{"status":"ok"}')
        else:
            self._error(404, "not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/audio/speech":
            return self._error(404, f"no route {self.path}")
        given = self.headers.get("Authorization", "").encode()
        authorised = self.key == "-" or hmac.compare_digest(given, f"Bearer {self.key}".encode())
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "the body is not JSON")
        with self.log_path.open("a") as log:
            log.write(json.dumps({**body, "authorised": authorised}) + "\n")
        if not authorised:
            return self._error(401, "Incorrect API key provided")
        text, fmt = body.get("input"), body.get("response_format", "mp3")
        if not isinstance(text, str) or not text or len(text) > MAX_INPUT:
            return self._error(400, f"input must be 1-{MAX_INPUT} characters")
        if not body.get("model") or not body.get("voice"):
            return self._error(400, "model and voice are required")
        if fmt not in ("wav", "pcm"):
            return self._error(400, f"response_format {fmt!r} is not supported by this stand-in")
        if self.fault == "error500":
            return self._error(500, "the stand-in fails on purpose")
        if self.fault == "hang":
            time.sleep(60)
            return None
        if self.fault == "html":
            return self._send(200, "text/html", b"<html><body>Sign in</body></html>")
        audio = espeak_wav(text)
        if self.fault == "oversize":  # a valid header, then silence without end
            return self._stream("audio/wav", [audio[:44]] + [bytes(65_536)] * 1024)
        if fmt == "pcm":
            return self._stream("audio/pcm", [wav_to_pcm24k(audio)])
        return self._stream("audio/wav", [audio[i : i + 8192] for i in range(0, len(audio), 8192)])

    def _error(self, status: int, message: str) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, kind: str, pieces: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading (oversize): fine


class TtsStandIn:
    """The stand-in in a subprocess on a free port, for one test or module."""

    def __init__(self, key: str = "-", fault: str = "none") -> None:
        assert fault in FAULTS
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="lookout-tts-", suffix=".jsonl")[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tts_standin", str(self.port), key, fault]
            + [str(self.log_path)],
            cwd=REPO,
            start_new_session=True,
        )
        why = wait_healthy(f"http://127.0.0.1:{self.port}/health", self.proc, 20.0)
        if why:
            self.stop()
            raise RuntimeError(f"the TTS stand-in {why}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/audio/speech"

    def requests(self) -> list[dict[str, Any]]:
        """Every request it got so far, oldest first."""
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log_path.unlink(missing_ok=True)


def main() -> None:
    port, key, fault, log_path = sys.argv[1:5]
    Handler.key, Handler.fault, Handler.log_path = key, fault, Path(log_path)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
