"""Speech for the CPU engine: espeak-ng as a subprocess, WAV on stdout, 48 kHz PCM out."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

from worker.engines.audio import to_pcm48k
from worker.engines.base import EngineError

ESPEAK = "espeak-ng"
INSTALL_HINT = "install espeak-ng: apt-get install espeak-ng, or set ENABLE_TTS=false"
SPEAK_TIMEOUT = 20.0  # seconds; espeak-ng speaks a sentence in a few milliseconds
# Sample rates a WAV may have: the usual ones, each a cheap ratio to 48 kHz.
WAV_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})


def find_espeak() -> str:
    """The espeak-ng executable on PATH, or EngineError saying how to get it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise EngineError(f"espeak-ng is not on PATH; {INSTALL_HINT}")
    return path


def speak(text: str, voice: str, executable: str = ESPEAK) -> bytes:
    """`text` spoken by espeak-ng in `voice`, as 48 kHz mono s16le PCM."""
    try:
        # Text goes in on stdin, so a sentence starting with "-" is never read as an option.
        done = subprocess.run(
            [executable, "--stdout", "-v", voice],
            input=text.encode(),
            capture_output=True,
            timeout=SPEAK_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise EngineError(f"espeak-ng is not on PATH; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"espeak-ng took over {SPEAK_TIMEOUT:.0f} s to speak") from None
    if done.returncode != 0 or not done.stdout:
        detail = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
        raise EngineError(f"espeak-ng failed with voice {voice!r} (ESPEAK_VOICE): {detail}")
    return wav_to_pcm48k(done.stdout)


def wav_to_pcm48k(data: bytes, who: str = "espeak-ng") -> bytes:
    """Parse a 16-bit PCM WAV (espeak-ng's output, a TTS server's answer), keep its first
    channel and resample it to 48 kHz s16le. `who` names the writer in errors."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise EngineError(f"{who} wrote {8 * wav.getsampwidth()}-bit audio, not 16-bit")
            rate, channels = wav.getframerate(), wav.getnchannels()
            # Streaming writers (espeak-ng, most TTS servers) put a placeholder length in the
            # header: read what is there.
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise EngineError(f"{who} wrote an unreadable WAV: {exc}") from None
    if rate not in WAV_RATES:
        # An odd rate makes the polyphase resampler's filter as long as the rate itself.
        raise EngineError(f"{who} wrote {rate} Hz audio; expected one of {sorted(WAV_RATES)}")
    samples = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels)[:, 0]
    return to_pcm48k(samples.astype(np.int16), rate)
