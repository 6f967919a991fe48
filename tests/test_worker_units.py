"""Windows, change detection, context bounds and lease primitives, piece by piece."""

from __future__ import annotations

import logging
from collections import deque

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.records import FrameRecord
from shared.settings_env import load_settings
from tests.worker_support import scene
from worker.leases import Leases, fair_share
from worker.scheduler import SourceSlot, bounded_context
from worker.windows import ChangeDetector, SampleBuffer


def record(seq: int, ts: float, jpeg: bytes | None = None) -> FrameRecord:
    return FrameRecord(seq, ts, 160, 90, jpeg if jpeg is not None else scene(1, seq))


def test_sampling_keeps_capture_fps_and_windows_take_every_stride_th_sample() -> None:
    settings = load_settings(
        {"CAPTURE_FPS": "2", "FRAMES_PER_INFERENCE": "3", "FRAME_STRIDE": "2"}, env_file=None
    )
    buffer = SampleBuffer("cam", settings)
    sampled = [buffer.offer(record(seq, 100 + seq * 0.1)) for seq in range(60)]  # 10 fps, 6 s
    assert sum(sampled) == 12  # 2 per second
    window = buffer.window()
    seqs = [s.frame.seq for s in window]
    assert len(seqs) == 3 and seqs == sorted(seqs)
    assert seqs[-1] == buffer.newest_seq
    assert seqs[1] - seqs[0] == seqs[2] - seqs[1] == 10  # every 2nd sample at 2 fps = 1 s
    assert not buffer.offer(record(10, 101.0))  # an old frame is not taken again


def test_short_windows_early_on_and_producer_restarts_are_followed() -> None:
    settings = load_settings({"FRAMES_PER_INFERENCE": "4", "FRAME_STRIDE": "1"}, env_file=None)
    buffer = SampleBuffer("cam", settings)
    assert buffer.window() == []
    buffer.offer(record(5, 10.0))
    assert [s.frame.seq for s in buffer.window()] == [5]
    assert buffer.offer(record(0, 11.0))  # seq went back, time went on: a restarted producer
    assert buffer.newest_seq == 0


def test_corrupt_frames_are_skipped_with_a_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    buffer = SampleBuffer("cam", load_settings({}, env_file=None))
    caplog.set_level(logging.WARNING)
    assert not buffer.offer(record(1, 1.0, b"\x89PNG\r\n\x1a\n" + b"\x00" * 50))
    assert not buffer.offer(record(2, 2.0, scene(1)[:-200]))
    assert buffer.offer(record(3, 3.0))
    assert buffer.rejected == 2 and "missing the FF D8 FF start marker" in caplog.text
    assert "skipped frame 2" in caplog.text


def test_change_detection_ignores_the_same_scene_and_sees_a_cut() -> None:
    settings = load_settings({"FRAME_STRIDE": "1", "CAPTURE_FPS": "10"}, env_file=None)
    buffer = SampleBuffer("cam", settings)
    detector = ChangeDetector(threshold=5.0)
    for seq in range(4):
        buffer.offer(record(seq, seq * 1.0, scene(1)))
    assert detector.change(buffer.window()) is None  # nothing commented yet
    detector.commented(buffer.window())
    for seq in range(4, 8):
        buffer.offer(record(seq, seq * 1.0, scene(1)))
    same = detector.change(buffer.window())
    for seq in range(8, 12):
        buffer.offer(record(seq, seq * 1.0, scene(2)))
    cut = detector.change(buffer.window())
    assert same is not None and cut is not None
    assert same < 1.0 < 5.0 < cut
    detector.reset()
    assert detector.change(buffer.window()) is None


def test_context_is_bounded_and_cleared_by_a_new_instruction() -> None:
    assert bounded_context(deque(["abc", "defgh"]), 100) == ["abc", "defgh"]
    assert bounded_context(deque(["abc", "defgh"]), 7) == ["…c", "defgh"]
    assert bounded_context(deque(["abc", "0123456789"]), 5) == ["…6789"]
    assert bounded_context(deque(["abc"]), 0) == []
    settings = load_settings({}, env_file=None)
    slot = SourceSlot("cam", SampleBuffer("cam", settings), ChangeDetector(5.0))
    assert not slot.apply_instruction("describe", 0)  # the first instruction is no change
    slot.remember("one", keep=2)
    slot.remember("two", keep=2)
    slot.remember("three", keep=2)
    assert list(slot.context) == ["two", "three"]
    assert not slot.apply_instruction("describe", 0)
    assert slot.apply_instruction("count people", 1) and slot.force
    assert list(slot.context) == []


def test_fair_share() -> None:
    assert fair_share(3, 2, 16) == 2
    assert fair_share(4, 2, 16) == 2
    assert fair_share(3, 1, 2) == 2
    assert fair_share(0, 3, 16) == 0


async def test_leases_are_exclusive_and_only_their_owner_renews_or_releases(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    one = Leases(redis_client, keys, "w1", ttl=5)
    two = Leases(redis_client, keys, "w2", ttl=5)
    assert await one.acquire("cam")
    assert not await two.acquire("cam")
    assert not await two.renew("cam") and not await two.release("cam")
    assert await one.holder("cam") == "w1"
    await redis_client.pexpire(keys.lease("cam"), 100)
    assert await one.renew("cam")
    assert await redis_client.pttl(keys.lease("cam")) > 4000
    assert await one.release("cam") and await one.holder("cam") is None
    assert await two.acquire("cam") and not await one.renew("cam")


def test_stale_control_messages_lose_to_newer_ones_but_the_state_hash_always_wins() -> None:
    settings = load_settings({}, env_file=None)
    slot = SourceSlot("cam", SampleBuffer("cam", settings), ChangeDetector(5.0))
    slot.apply_instruction("a", 4, authoritative=True)
    assert slot.apply_instruction("b", 5)
    assert not slot.apply_instruction("a", 4)  # a late, older message
    assert slot.instruction == "b"
    # Redis restarted: the state hash starts again at revision 0.
    assert slot.apply_instruction("default", 0, authoritative=True)
    assert (slot.instruction, slot.rev) == ("default", 0)
