"""MiniCPM-o's speech path: text and 24 kHz speech from the model's streaming API, as
48 kHz s16le PCM chunks aligned with their text, then a pause of silence.

`streaming_prefill(session_id, msgs=[{"role": "user", "content": [frames..., prompt]}],
is_last_chunk=True)` then `streaming_generate(session_id, generate_audio=True,
use_tts_template=True)`, which yields (waveform, new_text) pairs: each waveform is the speech
of the text that came with it. A fresh session id per window makes the model reset its LLM
cache but keep the reference voice (token2wav cache) set once at load.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.engines.audio import silence, to_pcm48k
from worker.engines.base import Chunk, EngineError
from worker.engines.fast_decode_stream import strip_special

TTS_RATE = 24_000  # MiniCPM-o 4.5's token2wav vocoder output
REF_RATE = 16_000  # init_token2wav_cache wants the reference voice at 16 kHz


def speech_messages(images: list[Any], prompt: str) -> list[dict[str, Any]]:
    """The one user message streaming_prefill takes: the frames, then the prompt."""
    return [{"role": "user", "content": [*images, prompt]}]


def waveform_pcm(waveform: Any) -> bytes:
    """A 24 kHz float waveform chunk (tensor or array) as 48 kHz s16le bytes."""
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().float().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    return to_pcm48k(samples, TTS_RATE)


def find_reference_audio(model_path: str, configured: str) -> Path:
    """REF_AUDIO_PATH if set, else the first reference-looking WAV in the checkpoint's assets."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise EngineError(f"REF_AUDIO_PATH={configured} does not exist")
        return path
    candidates = sorted(Path(model_path, "assets").rglob("*.wav"))
    preferred = [p for p in candidates if "ref" in p.name.lower()] or candidates
    if not preferred:
        raise EngineError(
            f"no reference voice: {model_path}/assets has no .wav file. Set REF_AUDIO_PATH to a "
            "WAV of the voice to speak with, or download the TTS assets (docs/models.md)"
        )
    return preferred[0]


def load_reference_audio(path: Path) -> npt.NDArray[np.float32]:
    """A WAV file as mono float32 at 16 kHz (what init_token2wav_cache expects)."""
    from math import gcd

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, data = wavfile.read(path)
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read reference voice {path}: {exc}") from exc
    samples = np.asarray(data)
    if np.issubdtype(samples.dtype, np.integer):  # scale before mixing down, which makes floats
        samples = samples / float(np.iinfo(samples.dtype).max)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    floats = samples.astype(np.float32)
    if rate != REF_RATE:
        common = gcd(int(rate), REF_RATE)
        floats = resample_poly(floats, REF_RATE // common, int(rate) // common)
    return np.asarray(floats, dtype=np.float32)


def init_speech(model: Any, model_path: str, ref_audio_path: str, float16: bool) -> Path:
    """init_tts (streaming vocoder) and the reference voice cache, once per load."""
    kwargs: dict[str, Any] = {"enable_float16": float16}
    if "streaming" in inspect.signature(model.init_tts).parameters:
        kwargs["streaming"] = True  # streaming_generate needs the token2wav vocoder
    model.init_tts(**kwargs)
    reference = find_reference_audio(model_path, ref_audio_path)
    model.init_token2wav_cache(load_reference_audio(reference))
    return reference


def speech_chunks(
    model: Any,
    images: list[Any],
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    pause_after: float,
    cancel: threading.Event,
) -> Iterator[Chunk]:
    """Text+PCM chunks of one spoken answer, then `pause_after` s of silence."""
    session = uuid.uuid4().hex
    model.streaming_prefill(
        session_id=session, msgs=speech_messages(images, prompt), is_last_chunk=True
    )
    if cancel.is_set():
        return
    generated = model.streaming_generate(
        session_id=session,
        generate_audio=True,
        use_tts_template=True,
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        temperature=temperature,
    )
    started = False
    try:
        for waveform, new_text in generated:
            if cancel.is_set():
                return
            text = strip_special(new_text or "")
            if not started:
                text, started = text.lstrip(), bool(text.strip())
            yield Chunk(text=text, pcm=waveform_pcm(waveform) if waveform is not None else None)
    finally:
        generated.close()
    if not cancel.is_set():
        yield Chunk(text="", pcm=silence(pause_after))
