"""OPENAI_SPEECH=endpoint: the text from a real `transformers serve`, each sentence spoken by a
TTS endpoint over HTTP. The endpoint is tests/tts_standin.py, a STAND-IN (a real HTTP server
process speaking OpenAI's `/v1/audio/speech`, synthesising with espeak-ng): no real TTS server
can be installed here. What is checked: 48 kHz speech per sentence, in order; a failing
endpoint keeps the text and falls back (espeak-ng, or silence without it); oversize and
non-audio answers refused with a clear log; a cancel stops a sentence being spoken; no key in
any log; and a real worker process publishing each sentence's 48 kHz speech on the bus."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.bus import Subscription
from shared.keys import Keys
from shared.messages import AudioChunk
from shared.settings import Settings, SettingsError
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from tests.openai_server import MODEL_A, OPENAI_TEST_KEY, ServeProcess
from tests.test_openai_engine import loaded_engine, window
from tests.test_openai_worker import worker_env, workers
from tests.tts_standin import TtsStandIn
from tests.worker_support import Feeder, Recorder, background, scene, subscribed
from worker.engines.base import PCM_SAMPLE_RATE, Chunk, EngineRequest
from worker.engines.cpu_speech import speak
from worker.engines.openai_engine import OpenAIEngine
from worker.engines.openai_speech import SpeechEndpoint, SpeechFailed, speech_url

pytestmark = pytest.mark.timeout(300)  # the first test waits for transformers serve

TTS_KEY = "sk-tts-" + "4e1d" * 6  # the stand-in's own key, when a test gives it one


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[TtsStandIn]:
    key, fault = getattr(request, "param", (OPENAI_TEST_KEY, "none"))
    server = TtsStandIn(key=key, fault=fault)
    yield server
    server.stop()


def engine_settings(chat: ServeProcess, tts: TtsStandIn, **env: str) -> Settings:
    base = {
        "ENGINE": "openai",
        "OPENAI_BASE_URL": chat.base_url,
        "OPENAI_MODEL": MODEL_A,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "ENABLE_TTS": "true",
        "OPENAI_SPEECH": "endpoint",
        "OPENAI_SPEECH_URL": tts.url,
        "OPENAI_SPEECH_MODEL": "tts-1",
        "OPENAI_SPEECH_VOICE": "nova",
    }
    return load_settings({**base, **env}, env_file=None)


def run(engine: OpenAIEngine, tokens: int, cancel: threading.Event | None = None) -> list[Chunk]:
    request = EngineRequest(
        source="cam", frames=window(), instruction="Describe.", max_new_tokens=tokens, speak=True
    )
    return list(engine.stream(request, cancel or threading.Event()))


def speech_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "TTS endpoint failed" in r.getMessage()]


def test_each_sentence_is_spoken_by_the_endpoint_at_48k(
    openai_server: ServeProcess, standin: TtsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with loaded_engine(engine_settings(openai_server, standin)) as (engine, info):
        assert info.extra["tts"] == "on"
        assert info.extra["tts_voice"] == "endpoint:tts-1/nova, else espeak-ng:en"
        chunks = run(engine, 160)  # random text of 300+ characters: spoken in 200-char pieces
    spoken = [c for c in chunks if c.pcm]
    asked = standin.requests()
    assert len(spoken) >= 2  # sentence by sentence, not one block at the end
    assert [c.text.strip() for c in spoken] == [r["input"] for r in asked]  # in order
    assert all(r["authorised"] for r in asked)  # OPENAI_API_KEY, no separate key set
    assert {(r["model"], r["voice"], r["response_format"]) for r in asked} == {
        ("tts-1", "nova", "wav")
    }
    assert all(c.pcm is None for c in chunks if not c.text.strip())
    assert sum(c.tokens for c in chunks) == 160  # the text is all there
    for chunk in spoken:
        assert chunk.pcm is not None
        # The stand-in speaks with espeak-ng's `en` at 22.05 kHz; resampled here to 48 kHz, it
        # is as long as the same sentence spoken locally (both resampled alike).
        local = speak(chunk.text.strip(), "en")
        assert abs(len(chunk.pcm) - len(local)) <= 4, chunk.text
        samples = np.frombuffer(chunk.pcm, "<i2")
        assert len(samples) / PCM_SAMPLE_RATE > 0.2
        assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert not speech_warnings(caplog)
    assert OPENAI_TEST_KEY not in caplog.text


@pytest.mark.parametrize("standin", [(OPENAI_TEST_KEY, "error500")], indirect=True)
def test_a_failing_endpoint_keeps_the_text_and_speaks_with_espeak(
    openai_server: ServeProcess, standin: TtsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with loaded_engine(engine_settings(openai_server, standin)) as (engine, _):
        first, second = run(engine, 160), run(engine, 8)
    for chunks, tokens in ((first, 160), (second, 8)):
        assert sum(c.tokens for c in chunks) == tokens  # no text lost
        assert all(c.pcm for c in chunks if c.text.strip())  # espeak-ng spoke every sentence
    assert len([c for c in first if c.pcm]) >= 2
    # One try and one message per cycle, not per sentence; the next cycle tries again.
    assert len(standin.requests()) == 2
    warnings = speech_warnings(caplog)
    assert len(warnings) == 2
    assert f"{standin.url} answered 500 (the stand-in fails on purpose)" in warnings[0]
    assert "this cycle's speech is spoken with espeak-ng" in warnings[0]


@pytest.mark.parametrize("standin", [(OPENAI_TEST_KEY, "hang")], indirect=True)
def test_a_silent_endpoint_times_out_and_without_espeak_the_cycle_stays_silent(
    openai_server: ServeProcess,
    standin: TtsStandIn,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on PATH: the fallback is silence
    settings = engine_settings(openai_server, standin, OPENAI_SPEECH_TIMEOUT="1")
    with loaded_engine(settings) as (engine, info):
        assert info.extra["tts_voice"] == "endpoint:tts-1/nova, else silence"
        chunks = run(engine, 8)
    assert sum(c.tokens for c in chunks) == 8 and "".join(c.text for c in chunks).strip()
    assert all(c.pcm is None for c in chunks)
    (warning,) = speech_warnings(caplog)
    assert "gave no audio within OPENAI_SPEECH_TIMEOUT=1 s" in warning
    assert "left silent (no espeak-ng)" in warning


@pytest.mark.parametrize("standin", [(OPENAI_TEST_KEY, "hang")], indirect=True)
def test_a_cancel_stops_the_sentence_being_spoken(
    openai_server: ServeProcess, standin: TtsStandIn
) -> None:
    settings = engine_settings(openai_server, standin, OPENAI_SPEECH_TIMEOUT="60")
    cancel = threading.Event()

    def cancel_once_asked() -> None:
        while not standin.requests():
            time.sleep(0.02)
        cancel.set()

    with loaded_engine(settings) as (engine, _):
        canceller = threading.Thread(target=cancel_once_asked, daemon=True)
        canceller.start()
        started = time.monotonic()
        chunks = run(engine, 8, cancel)
        elapsed = time.monotonic() - started
        canceller.join(5)
    assert cancel.is_set() and len(standin.requests()) == 1
    assert chunks == []  # the sentence being spoken when the cancel came is not said
    assert elapsed < 20  # not the 60 s the endpoint would have had


def endpoint(tts: TtsStandIn, **env: str) -> SpeechEndpoint:
    s = load_settings({"OPENAI_SPEECH_URL": tts.url, "OPENAI_API_KEY": TTS_KEY, **env}, None)
    return SpeechEndpoint(s)


async def say(point: SpeechEndpoint, text: str) -> bytes:
    try:
        return await point.speak(text)
    finally:
        await point.close()


@pytest.mark.parametrize("standin", [(TTS_KEY, "oversize")], indirect=True)
async def test_an_oversize_answer_is_refused_at_the_cap(standin: TtsStandIn) -> None:
    started = time.monotonic()
    with pytest.raises(SpeechFailed) as caught:
        await say(endpoint(standin, OPENAI_SPEECH_MAX_BYTES="100000"), "A car passes.")
    assert str(caught.value) == (
        f"{standin.url} sent over 100000 bytes of audio for one sentence; refused above "
        "OPENAI_SPEECH_MAX_BYTES=100000"
    )
    assert time.monotonic() - started < 5  # it stopped reading; the stand-in offered 64 MB


@pytest.mark.parametrize("standin", [(TTS_KEY, "html")], indirect=True)
async def test_a_non_audio_answer_is_refused(standin: TtsStandIn) -> None:
    with pytest.raises(SpeechFailed, match=r"answered text/html, not audio$"):
        await say(endpoint(standin), "A car passes.")


@pytest.mark.parametrize("standin", [(TTS_KEY, "none")], indirect=True)
async def test_a_separate_key_is_sent_and_a_refused_one_is_named_not_shown(
    standin: TtsStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    own = endpoint(standin, OPENAI_API_KEY="sk-chat-only-1234", OPENAI_SPEECH_API_KEY=TTS_KEY)
    assert TTS_KEY not in repr(own)
    assert len(await say(own, "A car passes.")) > PCM_SAMPLE_RATE // 2  # > 0.25 s of speech
    with pytest.raises(SpeechFailed) as caught:  # no speech key: OPENAI_API_KEY goes, refused
        await say(endpoint(standin, OPENAI_API_KEY="sk-chat-only-1234"), "A car passes.")
    assert str(caught.value) == (
        f"{standin.url} answered 401 (Incorrect API key provided); set OPENAI_SPEECH_API_KEY "
        "(or OPENAI_API_KEY) to a key it accepts"
    )
    assert [r["authorised"] for r in standin.requests()] == [True, False]
    assert TTS_KEY not in caplog.text and "sk-chat-only-1234" not in caplog.text


def test_the_endpoint_url_defaults_next_to_the_chat_server_and_must_be_http() -> None:
    s = load_settings({"OPENAI_BASE_URL": "http://vllm:8000/v1/"}, env_file=None)
    assert speech_url(s) == "http://vllm:8000/v1/audio/speech"
    with pytest.raises(SettingsError) as caught:
        load_settings({"OPENAI_SPEECH_URL": "file://u:secret@x/y"}, env_file=None)
    assert "OPENAI_SPEECH_URL: expected http:// or https://, not 'file'" == str(caught.value)
    assert "sk-x1" not in repr(load_settings({"OPENAI_SPEECH_API_KEY": "sk-x1"}, env_file=None))


@dataclass
class SpeechRecorder(Recorder):
    """A Recorder that also keeps the sources' audio channel."""

    async def run(self) -> None:
        channels = [self.keys.audio_channel(s) for s in self.sources]
        channels += [self.keys.events_channel(s) for s in self.sources]
        channels += [self.keys.text_channel(s) for s in self.sources]
        self.sub = Subscription(self.url, channels)
        async for _, message in self.sub.messages():
            self.messages.append((time.time(), message))

    def audio(self, cycle: str) -> list[AudioChunk]:
        return [m for _, m in self.messages if isinstance(m, AudioChunk) and m.cycle == cycle]


async def test_a_worker_publishes_each_sentence_with_its_48k_speech(
    redis_client: aioredis.Redis,
    test_env: dict[str, str],
    keys: Keys,
    openai_server: ServeProcess,
    standin: TtsStandIn,
) -> None:
    env = worker_env(
        test_env,
        openai_server,
        MODEL_A,
        ENABLE_TTS="true",
        TTS_MAX_NEW_TOKENS="150",
        OPENAI_SPEECH="endpoint",
        OPENAI_SPEECH_URL=standin.url,
    )
    settings = load_settings(env, env_file=None)
    await SourceRegistry(redis_client, keys, settings.default_instruction).register("cam")
    feeder = Feeder(redis_client, keys, "cam", scene(3))
    rec = SpeechRecorder(test_env["REDIS_URL"], keys, ["cam"])
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)), workers(("ws", env)) as (proc,):
        await subscribed(rec)
        await rec.wait(lambda: len(rec.events("cam", "finished")) >= 1, within=60)
        stop.set()
    finished = rec.events("cam", "finished")[0]
    texts = {c.seq: c.text for c in rec.chunks(finished.cycle)}
    audio = rec.audio(finished.cycle)
    asked = [r["input"] for r in standin.requests()]
    assert len(audio) >= 2, proc.log()[-2000:]  # sentence by sentence
    assert {seq for seq, text in texts.items() if text.strip()} == {a.seq for a in audio}
    for chunk in audio:
        assert chunk.sample_rate == PCM_SAMPLE_RATE and len(chunk.pcm) % 2 == 0
        assert texts[chunk.seq].strip() in asked  # the endpoint spoke this chunk's words
    assert OPENAI_TEST_KEY not in proc.log()
