"""`ENGINE=openai`: commentary from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ...).

Each window goes out as one streamed `POST {OPENAI_BASE_URL}/chat/completions` with the frames
as JPEG data URLs and the prompt of `compose_prompt`; text chunks are yielded as the server
streams them. The HTTP side is async (httpx) on a loop thread of the engine's own, so a cancel
closes the stream at once, even while the server is silent; `stream()` stays the blocking
generator the worker expects. Speech (ENABLE_TTS): with OPENAI_SPEECH=server the server is
asked for an audio modality and what it streams is resampled to 48 kHz; a server that sends
none, or OPENAI_SPEECH=local, gets each sentence spoken by espeak-ng here; OPENAI_SPEECH=endpoint
sends each sentence to a TTS endpoint (worker/engines/openai_speech.py), with espeak-ng (or
silence) for the rest of a cycle whose endpoint failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np

from shared.settings import Settings
from worker.engines.audio import to_pcm48k
from worker.engines.base import Chunk, Engine, EngineError, EngineInfo, EngineRequest
from worker.engines.cpu_speech import ESPEAK, find_espeak, speak, wav_to_pcm48k
from worker.engines.openai_client import OpenAIClient, ServerAnswer
from worker.engines.openai_request import chat_body, split_sentences
from worker.engines.openai_speech import CycleSpeech, SpeechEndpoint

log = logging.getLogger(__name__)

T = TypeVar("T")
SERVER_AUDIO_RATE = 24_000  # OpenAI's pcm16 audio: 24 kHz mono
CANCEL_POLL_S = 0.02  # how often the loop thread looks at the worker's cancel flag
_END = object()


class OpenAIEngine(Engine):
    """Streams commentary from the model OPENAI_MODEL at OPENAI_BASE_URL."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        if not settings.openai_model.strip():
            raise EngineError("ENGINE=openai needs OPENAI_MODEL: the model id the server serves")
        self.settings = settings
        self.model = settings.openai_model.strip()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._client: OpenAIClient | None = None
        self._espeak: str | None = None
        self._endpoint: SpeechEndpoint | None = None  # OPENAI_SPEECH=endpoint
        self._server_audio = settings.openai_speech == "server"
        self._info = EngineInfo(engine=self.name, checkpoint=self.model, device="remote")

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, server={self._shown_url()!r})"

    def _shown_url(self) -> str:
        return self._client.shown_url if self._client else ""

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def load(self) -> EngineInfo:
        """Start the HTTP loop, check the key and that the server serves OPENAI_MODEL."""
        started = time.perf_counter()
        s = self.settings
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="openai-http", daemon=True
            )
            self._thread.start()
        self._client = self._run(self._new_client())
        served = self._check_model()
        if s.enable_tts and s.openai_speech == "endpoint":
            self._endpoint = self._endpoint or self._run(self._new_endpoint())
            self._espeak = shutil.which(ESPEAK)  # the fallback voice; without it, silence
        elif s.enable_tts and s.openai_speech != "off":
            self._espeak = find_espeak()  # the fallback voice must exist before we need it
        self._info = EngineInfo(
            engine=self.name,
            checkpoint=self.model,
            device="remote",
            load_seconds=time.perf_counter() - started,
            extra={
                "server": self._client.shown_url,
                "server_models": ",".join(served or []),
                "tts": "on" if self._espeak or self._endpoint else "off",
                "tts_voice": self._voice(),
            },
        )
        log.info("openai engine ready: %s at %s", self.model, self._client.shown_url)
        return self._info

    async def _new_client(self) -> OpenAIClient:
        s = self.settings
        return OpenAIClient(s.openai_base_url, s.openai_api_key, s.openai_timeout, s.openai_retries)

    async def _new_endpoint(self) -> SpeechEndpoint:
        return SpeechEndpoint(self.settings)  # its httpx client belongs to the loop thread

    def _check_model(self) -> list[str] | None:
        assert self._client is not None
        try:
            served = self._run(self._client.models())
        except ServerAnswer as exc:
            if exc.status in (401, 403):
                raise  # a refused key: the worker cannot work, so it says so now
            log.warning("could not list the server's models: %s", exc)
            return None
        except EngineError as exc:
            # A server still starting (vLLM loads for minutes) is not a configuration error:
            # the cycles retry it, and fail clearly if it never comes.
            log.warning("could not list the server's models yet: %s", exc)
            return None
        if served and self.model not in served:
            raise EngineError(
                f"model {self.model!r} is not served at {self._client.shown_url}; it serves: "
                f"{', '.join(served)} (set OPENAI_MODEL)"
            )
        return served

    def _voice(self) -> str:
        local = f"espeak-ng:{self.settings.espeak_voice}" if self._espeak else ""
        if self._endpoint is not None:
            remote = f"endpoint:{self._endpoint.model}/{self._endpoint.voice}"
            return f"{remote}, else {local or 'silence'}"
        if not local:
            return ""
        return f"server, else {local}" if self._server_audio else local

    def _local_voice(self) -> Callable[[str], bytes] | None:
        if self._espeak is None:
            return None
        return functools.partial(speak, voice=self.settings.espeak_voice, executable=self._espeak)

    def info(self) -> EngineInfo:
        return self._info

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        """Chunks as the server streams them; a set `cancel` closes the HTTP stream."""
        if self._client is None:
            raise EngineError("the openai engine is not loaded; call load() first")
        if cancel.is_set():
            return
        speak_text = request.speak and (self._espeak is not None or self._endpoint is not None)
        speech = CycleSpeech(self._endpoint, self._loop, self._local_voice())
        out: queue.Queue[Any] = queue.Queue()
        left = threading.Event()  # the consumer stopped reading: stop the HTTP side too
        future = asyncio.run_coroutine_threadsafe(
            self._produce(request, speak_text, out, cancel, left), self._loop
        )
        try:
            while True:
                item = out.get()
                if item is _END or cancel.is_set():
                    break  # what the server sent after a cancel is not said
                if isinstance(item, BaseException):
                    raise item
                chunk = self._spoken(item, speak_text, speech, cancel)
                if cancel.is_set():
                    break  # cut off while speaking: that sentence is not said either
                yield chunk
        finally:
            left.set()
            with contextlib.suppress(Exception):
                future.result(timeout=self.settings.openai_timeout)

    def _spoken(
        self, chunk: Chunk, speak_text: bool, speech: CycleSpeech, cancel: threading.Event
    ) -> Chunk:
        """Add speech (endpoint or espeak-ng) to a chunk of whole sentences without server audio."""
        if not speak_text or chunk.pcm is not None or not chunk.text.strip():
            return chunk
        return Chunk(chunk.text, speech.speak(chunk.text.strip(), cancel), chunk.tokens)

    async def _produce(
        self,
        request: EngineRequest,
        speak_text: bool,
        out: queue.Queue[Any],
        cancel: threading.Event,
        left: threading.Event,
    ) -> None:
        task = asyncio.create_task(self._pump(request, speak_text, out))
        while not task.done():
            if cancel.is_set() or left.is_set():
                task.cancel()  # closes the HTTP stream: the server stops generating
                break
            await asyncio.wait({task}, timeout=CANCEL_POLL_S)
        try:
            await task
        except asyncio.CancelledError:
            pass  # cut off on purpose: the stream just ends
        except Exception as exc:
            out.put(exc)
        out.put(_END)

    async def _pump(self, request: EngineRequest, speak_text: bool, out: queue.Queue[Any]) -> None:
        """Stream one answer into `out`: text as it comes, spoken text by whole sentences."""
        s = self.settings
        audio = speak_text and self._server_audio
        body = chat_body(request, self.model, s.openai_temperature, s.openai_image_max_edge, audio)
        try:
            await self._relay(body, speak_text, out)
        except ServerAnswer as exc:
            if not audio or exc.status not in (400, 422):
                raise
            log.warning("the server gives no audio (%s); speaking with espeak-ng instead", exc)
            self._server_audio = False
            body = chat_body(request, self.model, s.openai_temperature, s.openai_image_max_edge)
            await self._relay(body, speak_text, out)

    async def _relay(self, body: dict[str, Any], speak_text: bool, out: queue.Queue[Any]) -> None:
        assert self._client is not None
        pending, tokens = "", 0  # text not yet put out; tokens streamed since the last chunk
        async with contextlib.aclosing(self._client.stream_chat(body)) as stream:
            async for delta in stream:
                if not (delta.text or delta.audio_b64):
                    continue
                tokens += 1
                pcm = None
                if delta.audio_b64:
                    pcm, text = server_pcm(delta.audio_b64), pending + delta.text
                    pending = ""
                elif speak_text:  # spoken locally: whole sentences only
                    sentences, pending = split_sentences(pending + delta.text)
                    text = " ".join(sentences) + " " if sentences else ""
                else:
                    text = delta.text
                if text or pcm is not None:
                    out.put(Chunk(text, pcm, tokens))
                    tokens = 0
        if pending.strip() or tokens:
            out.put(Chunk(pending, None, tokens))

    def close(self) -> None:
        for client in (self._client, self._endpoint):
            if client is not None and self._loop.is_running():
                with contextlib.suppress(Exception):
                    self._run(client.close())
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._thread = None
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()


def server_pcm(audio_b64: str) -> bytes:
    """A server's streamed audio as 48 kHz PCM: OpenAI's raw pcm16 at 24 kHz, or a WAV
    (some servers send whole WAV pieces; its header says its rate)."""
    try:
        data = base64.b64decode(audio_b64, validate=True)
    except ValueError:
        raise EngineError("the server streamed audio that is not base64") from None
    if data[:4] == b"RIFF":
        return wav_to_pcm48k(data, "the server")
    samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    return to_pcm48k(samples, SERVER_AUDIO_RATE)
