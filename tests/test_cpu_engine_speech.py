"""The CPU engine speaks through the real espeak-ng, and says clearly when it cannot."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from shared.settings import Settings
from worker.engines.base import PCM_SAMPLE_RATE, EngineError, EngineRequest, WindowFrame
from worker.engines.cpu import CpuEngine
from worker.engines.cpu_speech import wav_to_pcm48k

HINT = "install espeak-ng: apt-get install espeak-ng, or set ENABLE_TTS=false"


def window(speak: bool = True) -> EngineRequest:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[100:200, 200:300] = (0, 0, 255)
    frames = [WindowFrame(seq=n, ts=float(n), image=frame) for n in range(2)]
    return EngineRequest(source="cam", frames=frames, instruction="What colour?", speak=speak)


def test_spoken_sentences_carry_48k_pcm_of_plausible_length() -> None:
    engine = CpuEngine(Settings(enable_tts=True))
    info = engine.load()
    assert (info.extra["tts"], info.extra["tts_voice"]) == ("on", "espeak-ng:en")
    chunks = list(engine.stream(window(), threading.Event()))
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk.pcm is not None and len(chunk.pcm) % 2 == 0
        samples = np.frombuffer(chunk.pcm, dtype="<i2")
        seconds = len(samples) / PCM_SAMPLE_RATE
        words = len(chunk.text.split())
        # espeak-ng speaks roughly 175 words a minute: 0.15-1 s a word, with pauses.
        assert 0.15 * words < seconds < 1.0 * words + 1.0, (chunk.text, seconds)
        assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # speech, not silence


def test_unspoken_requests_carry_no_pcm() -> None:
    engine = CpuEngine(Settings(enable_tts=True))
    engine.load()
    assert all(chunk.pcm is None for chunk in engine.stream(window(speak=False), threading.Event()))


def test_tts_without_espeak_on_path_fails_at_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng anywhere
    with pytest.raises(EngineError, match=HINT):
        CpuEngine(Settings(enable_tts=True)).load()
    engine = CpuEngine(Settings(enable_tts=False))
    engine.load()  # text-only needs no espeak-ng
    with pytest.raises(EngineError, match=HINT):
        list(engine.stream(window(speak=True), threading.Event()))


def test_an_unknown_voice_fails_at_load_naming_the_setting() -> None:
    with pytest.raises(EngineError, match="ESPEAK_VOICE"):
        CpuEngine(Settings(enable_tts=True, espeak_voice="nosuchvoice")).load()


def test_a_broken_wav_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="unreadable WAV"):
        wav_to_pcm48k(b"RIFF....not a wav")
