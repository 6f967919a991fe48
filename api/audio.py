"""Speech for listeners: raw PCM (the default), Ogg/Opus (plays in <audio>), a WAV clip.

Everything on the bus is mono s16le PCM at 48 kHz (shared/messages.py). Per source and
process, each speech chunk is aligned once (`PcmTap`) and encoded to Opus once (`OpusTap`,
PyAV's libopus); every listener gets the same bytes or packets (api/hub.py). Only the Ogg
pages are per listener (api/ogg.py), so each stream starts cleanly however late it joins.

A WAV clip is finite: exactly `seconds` of audio, the speech said from the request on, cut
at `seconds` of speech or ended with silence when `seconds` of wall-clock time have passed,
whichever comes first; its length is known up front (Content-Length).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import struct
from fractions import Fraction
from typing import TYPE_CHECKING

from api.hub import RECONNECTED
from api.live import LiveBody, Write
from api.ogg import OggOpusWriter
from shared.messages import PCM_RATE, AnyMessage, AudioChunk
from shared.record_fields import RecordError, as_text
from shared.status_records import WorkerBeat

if TYPE_CHECKING:
    from av import AudioCodecContext

    from api.state import AppState  # the state builds the taps of this module

log = logging.getLogger(__name__)

OPUS_BITRATE = 32_000  # speech, mono: clear at 24-32 kb/s
# 20 ms frames: a chunk is padded to whole frames (else the encoder holds its tail until the
# next chunk), and 20 ms is the longest pause that padding may add between two chunks.
OPUS_FRAME = PCM_RATE * 20 // 1000
PCM_BYTES_PER_S = PCM_RATE * 2
WAV_SECONDS_MAX = 60
SILENCE = bytes(PCM_BYTES_PER_S)


class PcmTap:
    """Speech chunks at PCM_RATE, kept sample-aligned across chunks (see api/hub.py `Tap`)."""

    keepalive = False

    def __init__(self) -> None:
        self._carry = b""

    def convert(self, message: AnyMessage) -> bytes | None:
        if not isinstance(message, AudioChunk):
            return None
        if message.sample_rate != PCM_RATE:
            log.warning("dropped a %d Hz audio chunk of %s", message.sample_rate, message.source)
            return None
        data = self._carry + message.pcm
        cut = len(data) - len(data) % 2  # an odd chunk must not shift every later sample
        self._carry = data[cut:]
        return data[:cut] or None


def _encoder() -> AudioCodecContext:
    # PyAV loads FFmpeg's libraries: only a process with an Opus listener pays for that.
    import av

    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = PCM_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = OPUS_BITRATE
    codec.time_base = Fraction(1, PCM_RATE)
    codec.options = {"frame_duration": "20", "application": "voip"}
    codec.open()
    return codec


@functools.cache
def opus_head() -> bytes:
    """The OpusHead header (channels, pre-skip, rate) every encoder of these settings has."""
    return bytes(_encoder().extradata or b"")


class OpusTap:
    """Each speech chunk encoded once into Opus packets for every Ogg listener."""

    keepalive = False

    def __init__(self) -> None:
        self._pcm = PcmTap()
        self._encoder = _encoder()
        self._pts = 0

    def convert(self, message: AnyMessage) -> list[bytes] | None:
        import av

        pcm = self._pcm.convert(message)
        if pcm is None:
            return None
        # Pad to whole frames: the encoder would otherwise hold the tail until more speech.
        pcm += bytes(-len(pcm) % (OPUS_FRAME * 2))
        samples = len(pcm) // 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = PCM_RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, PCM_RATE)
        self._pts += samples
        return [bytes(packet) for packet in self._encoder.encode(frame)]


async def speech_enabled(state: AppState, source: str) -> bool:
    """Whether `source` is spoken: its worker's `tts` field, else this API's ENABLE_TTS."""
    lease = await state.redis.get(state.keys.lease(source))
    if lease is not None:
        raw = await state.redis.hgetall(state.keys.worker_status(as_text(lease)))  # type: ignore[misc]
        try:
            tts = WorkerBeat.from_fields(raw).tts if raw else None
        except RecordError:
            tts = None
        if tts is not None:
            return tts
    return state.settings.enable_tts


def _depth(state: AppState) -> int:
    # Speech comes in bursts faster than real time: allow a deeper queue than text.
    return state.settings.viewer_queue * 4


def pcm_body(state: AppState, source: str) -> LiveBody:
    """Raw PCM, chunk after chunk."""

    async def run(write: Write) -> None:
        async with state.hub.viewer(source, "audio", _depth(state)) as viewer:
            while True:
                data = [i for i in await viewer.take() if i is not RECONNECTED]
                if data:
                    await write(b"".join(data))

    return LiveBody(run)


def opus_body(state: AppState, source: str) -> LiveBody:
    """An Ogg/Opus stream: its headers at once, then one page per speech chunk."""

    async def run(write: Write) -> None:
        ogg = OggOpusWriter(secrets.randbits(32), opus_head())
        await write(ogg.headers())
        async with state.hub.viewer(source, "opus", _depth(state)) as viewer:
            while True:
                pages = [
                    ogg.audio(packets, OPUS_FRAME)
                    for packets in await viewer.take()
                    if packets is not RECONNECTED
                ]
                if pages:
                    await write(b"".join(pages))

    return LiveBody(run)


def wav_header(data_bytes: int) -> bytes:
    """A 44-byte RIFF/WAVE header for `data_bytes` of mono s16le PCM at PCM_RATE."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, PCM_RATE),
        *(PCM_BYTES_PER_S, 2, 16, b"data", data_bytes),
    )


def wav_size(seconds: int) -> int:
    """Bytes of a clip of `seconds`, header included (its Content-Length)."""
    return 44 + seconds * PCM_BYTES_PER_S


def wav_body(state: AppState, source: str, seconds: int) -> LiveBody:
    """A WAV clip of exactly `seconds` (see the module docstring)."""

    async def run(write: Write) -> None:
        total = seconds * PCM_BYTES_PER_S
        await write(wav_header(total))
        sent = 0
        async with state.hub.viewer(source, "audio", _depth(state)) as viewer:
            try:
                async with asyncio.timeout(seconds):  # one timer for the whole clip
                    while sent < total:
                        items = [i for i in await viewer.take() if i is not RECONNECTED]
                        data = b"".join(items)[: total - sent]
                        if data:
                            await write(data)
                            sent += len(data)
            except TimeoutError:
                pass
        while sent < total:
            pad = SILENCE[: total - sent]
            await write(pad)
            sent += len(pad)

    return LiveBody(run)
