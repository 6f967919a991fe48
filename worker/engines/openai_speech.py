"""OPENAI_SPEECH=endpoint: each sentence spoken by an OpenAI-style TTS endpoint.

`POST OPENAI_SPEECH_URL` (default `{OPENAI_BASE_URL}/audio/speech`) with OpenAI's body
`{model, input, voice, response_format: "wav"}`. WAV rather than OpenAI's raw `pcm`: its header
says the sample rate, and servers differ there (OpenAI and Kokoro speak at 24 kHz, Piper
voices at 22.05 kHz, espeak-ng at 22.05 kHz). The answer is untrusted: it must say it is audio,
stay under OPENAI_SPEECH_MAX_BYTES and parse as 16-bit PCM WAV at a usual rate, all within
OPENAI_SPEECH_TIMEOUT, or the sentence is refused with a message that says why.

A cycle whose endpoint fails (an error status, a timeout, a refused answer) keeps its text:
`CycleSpeech` logs once and speaks that cycle's remaining sentences with espeak-ng when it is
installed, or leaves them silent when it is not; the next cycle tries the endpoint again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.settings import Settings
from shared.source_urls import redact_url
from worker.engines.base import EngineError
from worker.engines.cpu_speech import wav_to_pcm48k
from worker.engines.openai_sse import error_message

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.02  # how often a sentence being spoken looks at the cycle's cancel flag
ERROR_BODY_BYTES = 4096  # of an error answer, read to quote its message
AUDIO_TYPES = ("audio/", "application/octet-stream")  # content types that may carry a WAV


class SpeechFailed(EngineError):
    """The TTS endpoint gave no usable audio for a sentence (the message says why)."""


def speech_url(settings: Settings) -> str:
    """OPENAI_SPEECH_URL, or the OpenAI route next to the chat server's."""
    url = settings.openai_speech_url.strip()
    return url or settings.openai_base_url.strip().rstrip("/") + "/audio/speech"


class SpeechEndpoint:
    """Speaks one sentence at a time at the TTS endpoint; async, on the engine's loop."""

    def __init__(self, settings: Settings) -> None:
        self.url = speech_url(settings)
        self.shown_url = redact_url(self.url)  # what logs and errors name
        self.model = settings.openai_speech_model
        self.voice = settings.openai_speech_voice
        self.timeout = settings.openai_speech_timeout
        self.max_bytes = settings.openai_speech_max_bytes
        key = settings.openai_speech_api_key or settings.openai_api_key
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,  # a redirect would carry the key elsewhere
        )

    def __repr__(self) -> str:
        return f"SpeechEndpoint({self.shown_url!r}, model={self.model!r}, voice={self.voice!r})"

    async def close(self) -> None:
        await self._client.aclose()

    async def speak(self, text: str) -> bytes:
        """`text` as 48 kHz mono s16le PCM, or SpeechFailed saying what went wrong."""
        try:
            async with asyncio.timeout(self.timeout):  # the whole sentence, not each read
                data = await self._fetch(text)
        except (TimeoutError, httpx.TimeoutException):
            raise SpeechFailed(
                f"{self.shown_url} gave no audio within OPENAI_SPEECH_TIMEOUT={self.timeout:g} s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # refused, reset, bad URL, ...
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SpeechFailed(f"cannot reach {self.shown_url}: {why}") from None
        try:
            return wav_to_pcm48k(data, f"the TTS endpoint {self.shown_url}")
        except EngineError as exc:
            raise SpeechFailed(f"{exc} (it was asked for response_format=wav)") from None

    async def _fetch(self, text: str) -> bytes:
        body = {"model": self.model, "input": text, "voice": self.voice, "response_format": "wav"}
        async with self._client.stream("POST", self.url, json=body, headers=self._headers) as r:
            if r.status_code != 200:
                raise SpeechFailed(self._refusal(r.status_code, await _head(r, ERROR_BODY_BYTES)))
            kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind and not kind.startswith(AUDIO_TYPES):
                raise SpeechFailed(f"{self.shown_url} answered {kind}, not audio")
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise SpeechFailed(self._too_big(f"{int(declared)} bytes"))
            data = bytearray()
            async for piece in r.aiter_raw():  # raw: a compressed answer cannot grow here
                data += piece
                if len(data) > self.max_bytes:
                    raise SpeechFailed(self._too_big(f"over {self.max_bytes} bytes"))
            return bytes(data)

    def _too_big(self, size: str) -> str:
        return (
            f"{self.shown_url} sent {size} of audio for one sentence; refused above "
            f"OPENAI_SPEECH_MAX_BYTES={self.max_bytes}"
        )

    def _refusal(self, status: int, body: bytes) -> str:
        detail = error_message(body.decode("utf-8", "replace")) or "no detail"
        hint = {
            401: "set OPENAI_SPEECH_API_KEY (or OPENAI_API_KEY) to a key it accepts",
            403: "set OPENAI_SPEECH_API_KEY (or OPENAI_API_KEY) to a key it accepts",
            404: "check OPENAI_SPEECH_URL and OPENAI_SPEECH_MODEL",
        }.get(status, "")
        return f"{self.shown_url} answered {status} ({detail})" + (f"; {hint}" if hint else "")


async def _head(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of `response`'s body (an error message, never all of it)."""
    data = bytearray()
    async for piece in response.aiter_raw():
        data += piece
        if len(data) >= limit:
            break
    return bytes(data[:limit])


@dataclass
class CycleSpeech:
    """One cycle's voice: the endpoint (if any) until it fails, then `fallback` (espeak-ng, or
    None: silence) for the rest of the cycle. Runs on the worker's thread, one sentence at a
    time; the HTTP request runs on `loop` and a set cancel abandons it at once."""

    endpoint: SpeechEndpoint | None
    loop: asyncio.AbstractEventLoop
    fallback: Callable[[str], bytes] | None
    failed: bool = False

    def speak(self, text: str, cancel: threading.Event) -> bytes | None:
        """The speech of `text`, or None (silence, or the cycle was cancelled)."""
        if self.endpoint is not None and not self.failed:
            future = asyncio.run_coroutine_threadsafe(self.endpoint.speak(text), self.loop)
            try:
                return _wait(future, cancel)
            except SpeechFailed as exc:
                self.failed = True  # one message per cycle, not one per sentence
                then = "spoken with espeak-ng" if self.fallback else "left silent (no espeak-ng)"
                log.warning("TTS endpoint failed: %s; this cycle's speech is %s", exc, then)
        if cancel.is_set():
            return None
        return self.fallback(text) if self.fallback is not None else None


def _wait(future: concurrent.futures.Future[bytes], cancel: threading.Event) -> bytes | None:
    """The future's result, or None as soon as `cancel` is set (the request is cancelled)."""
    while True:
        try:
            return future.result(timeout=CANCEL_POLL_S)
        except concurrent.futures.TimeoutError:
            if cancel.is_set():
                future.cancel()  # cancels the task on the loop: the HTTP request is closed
                return None
