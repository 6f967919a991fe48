"""Speech to a LiveKit audio track: bus PCM → 20 ms `rtc.AudioFrame`s on a steady clock.

The worker publishes speech in bursts faster than real time; a WebRTC track wants one frame
every 20 ms, silence included (a track that stops sending makes receivers stretch or drop
audio). `SpeechBuffer` holds what is still to be played, by cycle, so an interrupted cycle's
queued speech is dropped at once (the worker stops sending it, as `/audio` listeners see; what
the bridge had buffered ahead of real time would otherwise still play). `AudioPacer` hands out one frame per
period against deadlines counted from its start (start + n × period), never by sleeping a
period after each frame, so lateness of one wake-up is not added to the next: no drift over
hours (tests/test_livekit_audio.py measures it with a simulated clock). It stays LEAD_FRAMES
ahead of the clock: the SDK's `AudioSource` plays its queue out in real time and fills any
underrun with silence, so a wake-up a few ms late would otherwise put gaps into words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from livekit import rtc

from shared.messages import PCM_RATE

log = logging.getLogger(__name__)

FRAME_MS = 20  # LiveKit's and Opus's usual frame; 10 works too
MAX_BUFFER_S = 120.0  # speech queued beyond this is dropped, oldest first (a stuck track)
# Behind by more than this (a stalled event loop, a suspended VM): start the count again
# instead of sending the missed frames in one burst.
RESYNC_S = 0.5
BYTES_PER_SAMPLE = 2  # s16le mono
LEAD_FRAMES = 4  # frames sent ahead of the clock (80 ms): absorbs a late wake-up


class Clock(Protocol):
    """Time for the pacer; tests pass a simulated one."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: `time.monotonic` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SpeechBuffer:
    """PCM waiting to be played, in the order it came, each piece tagged with its cycle."""

    def __init__(self, max_seconds: float = MAX_BUFFER_S) -> None:
        self._pieces: deque[tuple[str, bytes]] = deque()
        self._bytes = 0
        self._max_bytes = int(max_seconds * PCM_RATE) * BYTES_PER_SAMPLE
        self._odd: dict[str, bytes] = {}  # a trailing odd byte per cycle, joined to its next chunk
        self.dropped_bytes = 0

    @property
    def seconds(self) -> float:
        """Speech still to be played."""
        return self._bytes / BYTES_PER_SAMPLE / PCM_RATE

    def add(self, cycle: str, pcm: bytes) -> None:
        """Queue speech of `cycle`, keeping the stream sample-aligned like `/audio` does."""
        data = self._odd.pop(cycle, b"") + pcm
        if len(data) % BYTES_PER_SAMPLE:
            self._odd[cycle], data = data[-1:], data[:-1]
        if data:
            self._pieces.append((cycle, data))
            self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, oldest = self._pieces.popleft()
            self._bytes -= len(oldest)
            self.dropped_bytes += len(oldest)
            log.warning("speech buffer over %.0f s: dropped %d bytes", MAX_BUFFER_S, len(oldest))

    def cut(self, cycle: str) -> int:
        """Drop everything of `cycle` not yet played (it was interrupted); returns bytes dropped."""
        kept = deque(piece for piece in self._pieces if piece[0] != cycle)
        dropped = self._bytes - sum(len(p) for _, p in kept)
        self._pieces, self._bytes = kept, self._bytes - dropped
        self._odd.pop(cycle, None)
        return dropped

    def take(self, samples: int) -> bytes:
        """The next `samples` samples, silence where there is no speech."""
        wanted = samples * BYTES_PER_SAMPLE
        out = bytearray()
        while self._pieces and len(out) < wanted:
            cycle, piece = self._pieces.popleft()
            need = wanted - len(out)
            out += piece[:need]
            if len(piece) > need:
                self._pieces.appendleft((cycle, piece[need:]))
        self._bytes -= len(out)
        return bytes(out) + bytes(wanted - len(out))


def audio_frame(pcm: bytes) -> rtc.AudioFrame:
    """A 48 kHz mono `rtc.AudioFrame` of s16le `pcm`."""
    samples = len(pcm) // BYTES_PER_SAMPLE
    return rtc.AudioFrame(pcm, PCM_RATE, 1, samples)


class AudioPacer:
    """Sends one frame of `buffer` every `frame_ms` to `sink` until stopped."""

    def __init__(
        self,
        buffer: SpeechBuffer,
        sink: Callable[[rtc.AudioFrame], Awaitable[None]],
        clock: Clock | None = None,
        frame_ms: int = FRAME_MS,
        lead_frames: int = LEAD_FRAMES,
    ) -> None:
        if frame_ms not in (10, 20):
            raise ValueError(f"frame_ms={frame_ms}: LiveKit takes 10 or 20 ms frames")
        self.buffer = buffer
        self._sink = sink
        self._clock = clock or MonotonicClock()
        self.period = frame_ms / 1000
        self.samples = PCM_RATE * frame_ms // 1000
        self.lead = lead_frames
        self.frames = 0  # frames sent
        self.resyncs = 0  # times the count started again after a stall
        self.started_at = 0.0
        self.skipped = 0  # frame periods skipped by resyncs

    def drift(self) -> float:
        """Seconds the audio sent is behind (+) or ahead (-) of the clock since the start."""
        sent = (self.frames + self.skipped - self.lead) * self.period
        return (self._clock.now() - self.started_at) - sent

    async def run(self, stop: asyncio.Event) -> None:
        clock = self._clock
        self.started_at = start = clock.now()
        count = 0  # frames since `start`
        while not stop.is_set():
            await self._sink(audio_frame(self.buffer.take(self.samples)))
            self.frames += 1
            count += 1
            due = start + (count - self.lead) * self.period
            late = clock.now() - due
            if late > RESYNC_S:
                missed = int(late / self.period)
                log.warning("audio pacer %.2f s behind: skipping %d frames", late, missed)
                self.resyncs += 1
                self.skipped += missed
                count += missed
                due = start + (count - self.lead) * self.period
            await clock.sleep(max(0.0, due - clock.now()))
