"""Speech samples to the one wire format every engine publishes: 48 kHz mono s16le PCM."""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from worker.engines.base import PCM_SAMPLE_RATE


def to_pcm48k(samples: npt.NDArray[np.floating] | npt.NDArray[np.int16], rate: int) -> bytes:
    """Resample mono `samples` at `rate` Hz to 48 kHz s16le bytes.

    Float input is taken as -1..1 and clipped there (TTS vocoders overshoot a little);
    int16 input is scaled to that range first.
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    data = np.asarray(samples)
    if data.ndim > 1:
        data = data.reshape(-1)
    if data.dtype == np.int16:
        floats = data.astype(np.float32) / 32768.0
    else:
        floats = data.astype(np.float32)
    if rate != PCM_SAMPLE_RATE:
        common = gcd(rate, PCM_SAMPLE_RATE)
        floats = resample_poly(floats, PCM_SAMPLE_RATE // common, rate // common).astype(np.float32)
    clipped = np.clip(floats, -1.0, 1.0)
    return bytes((clipped * 32767.0).round().astype("<i2").tobytes())


def silence(seconds: float) -> bytes:
    """`seconds` of 48 kHz s16le silence (the pause after a spoken commentary)."""
    return b"\x00\x00" * int(round(seconds * PCM_SAMPLE_RATE))
