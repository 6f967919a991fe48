"""Speech to LiveKit: PCM → 20 ms `rtc.AudioFrame`s on a steady clock (issue 16).

Framing and cutting use real SDK frames; the pacing clock is measured over a simulated hour
with a clock that oversleeps like a loaded event loop; the last test sends speech through a
real `rtc.AudioSource` and reads it back from its track with `rtc.AudioStream`.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from livekit import rtc

from bridge.audio import AudioPacer, SpeechBuffer, audio_frame
from shared.messages import PCM_RATE

pytestmark = pytest.mark.usefixtures("livekit_handles_released")

FRAME = PCM_RATE * 20 // 1000  # samples in a 20 ms frame


def tone(value: int, samples: int) -> bytes:
    return np.full(samples, value, dtype=np.int16).tobytes()


class SimulatedClock:
    """Time that advances only by sleeping; every sleep wakes up late by 0-`jitter_ms` ms,
    and each `stall_every`th by `stall_s` more (a loaded machine)."""

    def __init__(self, jitter_ms: float = 4.0, stall_every: int = 0, stall_s: float = 0.0) -> None:
        self.t = 1000.0
        self._rng = random.Random(16)
        self._jitter = jitter_ms / 1000
        self._stall_every, self._stall_s = stall_every, stall_s
        self.sleeps = 0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.t += seconds + self._rng.uniform(0, self._jitter)
        if self._stall_every and self.sleeps % self._stall_every == 0:
            self.t += self._stall_s
        await asyncio.sleep(0)


def test_frames_are_20_ms_of_48_khz_mono_with_the_exact_samples() -> None:
    buffer = SpeechBuffer()
    samples = np.arange(FRAME * 2 + 100, dtype=np.int16)
    buffer.add("c1", samples.tobytes())
    first = audio_frame(buffer.take(FRAME))
    second = audio_frame(buffer.take(FRAME))
    third = audio_frame(buffer.take(FRAME))
    for frame in (first, second, third):
        assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (
            PCM_RATE,
            1,
            FRAME,
        )
        assert frame.duration == pytest.approx(0.020)
    got = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in (first, second, third)])
    assert got[: len(samples)].tolist() == samples.tolist()
    assert not got[len(samples) :].any()  # padded with silence, not old data
    assert not np.frombuffer(audio_frame(buffer.take(FRAME)).data, np.int16).any()  # idle: silence


def test_odd_chunk_lengths_stay_sample_aligned_per_cycle() -> None:
    buffer = SpeechBuffer()
    pcm = np.array([1000, -2000, 3000], dtype=np.int16).tobytes()
    buffer.add("c", pcm[:3])  # one and a half samples
    buffer.add("c", pcm[3:])
    got = np.frombuffer(buffer.take(3), dtype=np.int16)
    assert got.tolist() == [1000, -2000, 3000]


def test_an_interrupted_cycle_is_cut_and_the_next_one_plays() -> None:
    buffer = SpeechBuffer()
    buffer.add("old", tone(7, FRAME * 50))
    buffer.take(FRAME)  # one frame of it already played
    buffer.add("new", tone(9, FRAME))
    dropped = buffer.cut("old")
    assert dropped == FRAME * 49 * 2
    assert np.frombuffer(buffer.take(FRAME), np.int16).tolist() == [9] * FRAME
    assert buffer.seconds == 0


def test_the_buffer_drops_the_oldest_speech_beyond_its_limit() -> None:
    buffer = SpeechBuffer(max_seconds=1.0)
    buffer.add("a", tone(1, PCM_RATE))
    buffer.add("b", tone(2, PCM_RATE // 2))
    assert buffer.seconds <= 1.0 and buffer.dropped_bytes == PCM_RATE * 2
    assert np.frombuffer(buffer.take(10), np.int16).tolist() == [2] * 10


async def pace(clock: SimulatedClock, hours: float) -> tuple[AudioPacer, float]:
    """Run a pacer for `hours` of simulated time; returns it and the simulated seconds."""
    sent: list[int] = []
    stop = asyncio.Event()
    buffer = SpeechBuffer()
    start = clock.now()
    limit = start + hours * 3600

    async def sink(frame: rtc.AudioFrame) -> None:
        sent.append(frame.samples_per_channel)
        if clock.now() >= limit:
            stop.set()

    pacer = AudioPacer(buffer, sink, clock)
    await pacer.run(stop)
    assert set(sent) == {FRAME}
    return pacer, clock.now() - start


async def test_no_drift_over_a_simulated_hour_of_jittery_wakeups() -> None:
    clock = SimulatedClock(jitter_ms=4.0)
    pacer, elapsed = await pace(clock, hours=1)
    expected = elapsed / 0.020
    # Every wake-up was up to 4 ms late (about 2 ms on average, 180,000 times: a pacer that
    # slept 20 ms after each frame would be 6 minutes behind); deadlines from the start keep
    # the count within one frame of the clock.
    assert abs(pacer.frames - pacer.lead - expected) <= 1.0, (pacer.frames, expected)
    assert abs(pacer.drift()) <= 0.020
    assert pacer.resyncs == 0
    print(f"1 h simulated: {pacer.frames} frames, drift {pacer.drift() * 1000:.2f} ms")


async def test_after_a_stall_the_pacer_resyncs_instead_of_bursting() -> None:
    clock = SimulatedClock(jitter_ms=1.0, stall_every=30_000, stall_s=2.0)  # 2 s stall every 10 min
    pacer, elapsed = await pace(clock, hours=0.5)
    assert pacer.resyncs == 2  # at 10 and 20 minutes
    assert abs(pacer.drift()) <= 0.020  # the missed time is skipped, not owed
    assert pacer.frames <= elapsed / 0.020 - 2 * 90  # the ~200 missed frames were not sent


async def test_speech_reaches_a_subscriber_through_a_real_audio_source() -> None:
    buffer = SpeechBuffer()
    source = rtc.AudioSource(PCM_RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("speech", source)
    stream = rtc.AudioStream(track, sample_rate=PCM_RATE, num_channels=1)
    speech = np.arange(1, FRAME * 5 + 1, dtype=np.int16)  # 100 ms of distinct samples
    buffer.add("c1", speech.tobytes())
    stop = asyncio.Event()
    pacer = AudioPacer(buffer, source.capture_frame)
    heard: list[np.ndarray] = []

    async def listen() -> None:
        async for event in stream:
            heard.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())
            if sum(len(h) for h in heard) >= FRAME * 15:
                return

    running = asyncio.create_task(pacer.run(stop))
    try:
        await asyncio.wait_for(listen(), 20)
    finally:
        stop.set()
        await running
        await stream.aclose()
        await source.aclose()
    got = np.concatenate(heard)
    # Every sample in order, then silence (still one frame per period). A stall of a loaded
    # machine longer than the pacer's lead may insert silence inside, so zeros are skipped.
    assert got[got != 0].tolist() == speech.tolist()
    assert len(got) >= FRAME * 15
