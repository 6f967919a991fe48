"""Speech: text to speech of the commentaries."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var

OPENAI_SPEECH = ("local", "server", "off")  # see worker/engines/openai_engine.py


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
        "`local` speaks the text with espeak-ng, `off` stays silent",
        "speech",
        choices=OPENAI_SPEECH,
    )
