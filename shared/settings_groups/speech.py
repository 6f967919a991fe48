"""Speech: text to speech of the commentaries."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var

OPENAI_SPEECH = ("local", "server", "endpoint", "off")  # see worker/engines/openai_engine.py


@dataclass(frozen=True)
class SpeechSettings:
    """The `speech` group of `Settings`, its variables in the order the docs list them."""

    enable_tts: bool = var(
        False, "Speak commentaries (MiniCPM-o TTS, or espeak-ng with the CPU engine)", "speech"
    )
    tts_float16: bool = var(True, "Run MiniCPM-o's TTS in float16", "speech")
    ref_audio_path: str = var(
        "", "Reference voice (WAV) for MiniCPM-o TTS (empty: the checkpoint's assets)", "speech"
    )
    tts_pause_after: float = var(
        1.0, "Silence after each spoken commentary (s)", "speech", lo=0, hi=30
    )
    tts_max_new_tokens: int = var(
        150, "Longest commentary in tokens when speaking", "speech", lo=1, hi=4096
    )
    espeak_voice: str = var("en", "espeak-ng voice of the CPU engine", "speech")
    openai_speech: str = var(
        "local",
        "openai engine with ENABLE_TTS: `server` asks the server for audio (falls back to local), "
        "`endpoint` sends each sentence to OPENAI_SPEECH_URL (falls back to local, or silence "
        "without espeak-ng), `local` speaks the text with espeak-ng, `off` stays silent",
        "speech",
        choices=OPENAI_SPEECH,
    )
    openai_speech_url: str = var(
        "",
        "TTS endpoint (OPENAI_SPEECH=endpoint): its URL, OpenAI's `POST /audio/speech` answering "
        "WAV (empty: OPENAI_BASE_URL + /audio/speech)",
        "speech",
    )
    openai_speech_model: str = var(
        "tts-1", "TTS endpoint (OPENAI_SPEECH=endpoint): the `model` it is sent", "speech"
    )
    openai_speech_voice: str = var(
        "alloy", "TTS endpoint (OPENAI_SPEECH=endpoint): the `voice` it is sent", "speech"
    )
    openai_speech_api_key: str = var(
        "",
        "TTS endpoint (OPENAI_SPEECH=endpoint): its API key (empty: OPENAI_API_KEY); never logged",
        "speech",
        secret=True,
    )
    openai_speech_timeout: float = var(
        10.0,
        "TTS endpoint (OPENAI_SPEECH=endpoint): seconds one sentence may take, answer and audio, "
        "before the cycle falls back",
        "speech",
        lo=0.5,
        hi=600,
    )
    openai_speech_max_bytes: int = var(
        8_000_000,
        "TTS endpoint (OPENAI_SPEECH=endpoint): largest audio answer for one sentence (bytes); "
        "bigger is refused",
        "speech",
        lo=65_536,
        hi=512_000_000,
    )
