"""ENGINE=openai against a real OpenAI-compatible server: `transformers serve` on tiny VLMs.

The server streams random-weight text (it never stops by itself, so an answer is as long as
max_tokens): what is checked is the protocol, not the words. Killing and restarting the
server, a wrong API key and an unknown model are the real thing, not imitations.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from shared.jpeg import encode_jpeg
from shared.settings import Settings
from shared.settings_env import load_settings
from tests.openai_server import MODEL_A, MODEL_B, OPENAI_TEST_KEY, ServeProcess
from worker.engines.base import Chunk, EngineError, EngineInfo, EngineRequest, WindowFrame
from worker.engines.openai_engine import OpenAIEngine

# The first test to use the server waits for it to be built and started (once per session).
pytestmark = pytest.mark.timeout(300)

KEY = OPENAI_TEST_KEY


@pytest.fixture
def server(openai_server: ServeProcess) -> ServeProcess:
    return openai_server


def engine_settings(server: ServeProcess, **env: str) -> Settings:
    base = {
        "ENGINE": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_MODEL": MODEL_A,
        "OPENAI_API_KEY": KEY,
        "OPENAI_TIMEOUT": "30",
    }
    return load_settings({**base, **env}, env_file=None)


def window(count: int = 2) -> list[WindowFrame]:
    frames = []
    for n in range(count):
        image = np.full((90, 160, 3), 40 * n, np.uint8)
        frames.append(WindowFrame(n, time.time(), image, encode_jpeg(image, 80)))
    return frames


def ask(tokens: int) -> EngineRequest:
    return EngineRequest(
        source="cam", frames=window(), instruction="Describe it.", max_new_tokens=tokens
    )


@contextlib.contextmanager
def loaded_engine(settings: Settings) -> Iterator[tuple[OpenAIEngine, EngineInfo]]:
    """An openai engine on `settings`, loaded (its info), closed on the way out."""
    made = OpenAIEngine(settings)
    try:
        yield made, made.load()
    finally:
        made.close()


@pytest.fixture
def engine(server: ServeProcess) -> Iterator[OpenAIEngine]:
    e = OpenAIEngine(engine_settings(server))
    yield e
    e.close()


def test_streams_a_commentary_and_lists_the_served_models(engine: OpenAIEngine) -> None:
    info = engine.load()
    assert info.checkpoint == MODEL_A
    assert set(info.extra["server_models"].split(",")) == {MODEL_A, MODEL_B}
    chunks = list(engine.stream(ask(24), threading.Event()))
    assert len(chunks) > 1  # streamed, not one block
    assert "".join(c.text for c in chunks)
    assert sum(c.tokens for c in chunks) == 24  # one streamed piece per token


def test_cancel_closes_the_stream_within_one_chunk(engine: OpenAIEngine) -> None:
    engine.load()
    cancel = threading.Event()
    seen: list[Chunk] = []
    for chunk in engine.stream(ask(3000), cancel):  # about a minute of tokens uncut
        seen.append(chunk)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3  # nothing after the cancel
    # The server stopped generating: the next answer is not queued behind 3000 tokens.
    started = time.monotonic()
    assert list(engine.stream(ask(8), threading.Event()))
    assert time.monotonic() - started < 20


def test_a_wrong_key_is_a_clear_error_and_no_key_is_ever_logged(
    server: ServeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = OpenAIEngine(engine_settings(server, OPENAI_API_KEY="sk-wrong-123456"))
    try:
        with pytest.raises(EngineError, match="refused the API key") as caught:
            wrong.load()
        assert "sk-wrong-123456" not in str(caught.value)
        assert "OPENAI_API_KEY" in str(caught.value)
    finally:
        wrong.close()
    right = OpenAIEngine(engine_settings(server))
    try:
        right.load()
        assert list(right.stream(ask(4), threading.Event()))
        assert KEY not in repr(right) and KEY not in repr(right.settings)
        assert KEY not in str(right.info())
    finally:
        right.close()
    assert caplog.records  # httpx and the engine did log; none of it carries a key
    assert KEY not in caplog.text and "sk-wrong-123456" not in caplog.text


def test_an_unknown_model_is_named_with_what_the_server_serves(server: ServeProcess) -> None:
    engine = OpenAIEngine(engine_settings(server, OPENAI_MODEL="lookout/no-such-model"))
    try:
        with pytest.raises(EngineError) as caught:
            engine.load()
        message = str(caught.value)
        assert "'lookout/no-such-model' is not served" in message
        assert MODEL_A in message and "OPENAI_MODEL" in message
    finally:
        engine.close()


@pytest.mark.parametrize("mode", ["local", "server"])
def test_speech_is_spoken_here_when_the_server_sends_none(server: ServeProcess, mode: str) -> None:
    # transformers serve gives no audio modality: `server` falls back to espeak-ng too.
    engine = OpenAIEngine(engine_settings(server, ENABLE_TTS="true", OPENAI_SPEECH=mode))
    try:
        assert engine.load().extra["tts"] == "on"
        request = EngineRequest(
            source="cam", frames=window(), instruction="Describe.", max_new_tokens=12, speak=True
        )
        chunks = list(engine.stream(request, threading.Event()))
        spoken = [c for c in chunks if c.pcm]
        assert spoken and all(len(c.pcm or b"") % 2 == 0 for c in spoken)
        assert all(c.text.strip() for c in spoken)  # speech always comes with its words
        assert sum(c.tokens for c in chunks) == 12  # tokens still counted when spoken
    finally:
        engine.close()


def test_openai_engine_needs_a_model() -> None:
    with pytest.raises(EngineError, match="OPENAI_MODEL"):
        OpenAIEngine(load_settings({"ENGINE": "openai"}, env_file=None))


def test_server_killed_mid_stream_fails_the_answer_and_the_next_waits_for_it(
    server: ServeProcess,
) -> None:
    # Last in this module: it kills the module's server and starts it again on its port.
    engine = OpenAIEngine(engine_settings(server, OPENAI_RETRIES="12"))
    try:
        engine.load()
        seen = 0
        with pytest.raises(EngineError, match="broke mid-answer"):
            for _ in engine.stream(ask(3000), threading.Event()):
                seen += 1
                if seen == 3:
                    server.stop()
        assert seen >= 3
        restarter = threading.Timer(1.0, server.start)
        restarter.start()
        chunks = list(engine.stream(ask(8), threading.Event()))  # connection refused: retried
        restarter.join()
        assert sum(c.tokens for c in chunks) == 8
    finally:
        engine.close()
