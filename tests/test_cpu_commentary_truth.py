"""The CPU engine says only what is there, and says it once: still frames, one moving object
(made by ffmpeg), two objects moving apart (drawn with OpenCV); repeats left out unless the
instruction asks for them; and the same through a real producer and worker."""

from __future__ import annotations

import math
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import redis

from shared.keys import Keys
from shared.messages import CycleSkipped, decode_message
from shared.records import CommentaryRecord
from shared.settings import Settings
from shared.status_records import SourceStats
from tests.helpers import LookoutProcess
from worker.engines.base import EngineRequest, NothingNew, WindowFrame
from worker.engines.cpu import UNCHANGED, CpuEngine
from worker.engines.cpu_memory import asks_for_repeats
from worker.engines.cpu_motion import heading, measure_motion

Image = npt.NDArray[np.uint8]
H, W = 360, 640
BACKGROUND = (90, 40, 20)  # dark blue: grey 40, the red squares grey 89


@pytest.fixture
def engine() -> CpuEngine:
    engine = CpuEngine(Settings(enable_tts=False))
    engine.load()
    return engine


def say(
    engine: CpuEngine,
    images: Sequence[Image],
    instruction: str = "Describe what is happening in the video.",
    context: Sequence[str] = (),
    kind: str = "commentary",
) -> list[str]:
    frames = [WindowFrame(seq=n, ts=float(n), image=image) for n, image in enumerate(images)]
    req = EngineRequest(
        source="cam", frames=frames, instruction=instruction, context=tuple(context), kind=kind
    )  # type: ignore[arg-type]
    try:
        return [chunk.text.strip() for chunk in engine.stream(req, threading.Event())]
    except NothingNew as exc:  # the worker records the cycle as skipped, with this reason
        return [f"skipped: {exc}"]


def squares(*xs_per_frame: Sequence[int]) -> list[Image]:
    """One frame per entry: a red square at each x, over green."""
    frames = []
    for xs in xs_per_frame:
        frame = np.full((H, W, 3), BACKGROUND, np.uint8)
        for x in xs:
            cv2.rectangle(frame, (x - 30, 150), (x + 30, 210), (30, 30, 230), -1)
        frames.append(frame)
    return frames


def ffmpeg_frames(tmp_path: Path, overlay_x: str, count: int = 4, step: int = 4) -> list[Image]:
    """Frames of an ffmpeg clip: a red box over navy, placed by the overlay expression."""
    pattern = tmp_path / "f%03d.png"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "color=c=0x102060:s=640x360:r=10:d=2",
         "-f", "lavfi", "-i", "color=c=red:s=120x120:r=10:d=2",
         "-filter_complex", f"[0][1]overlay=x='{overlay_x}':y=140", str(pattern)],
        check=True, timeout=60,
    )  # fmt: skip
    files = sorted(tmp_path.glob("f*.png"))[: count * step : step]
    return [np.asarray(cv2.imread(str(f)), np.uint8) for f in files]


def test_heading_of_nan_is_nothing_not_up() -> None:
    assert heading(math.nan, math.nan) == ""
    assert heading(math.inf, 0.0) == ""
    assert heading(0.0, -5.0) == "up"


def test_a_pair_without_moving_pixels_adds_no_nan() -> None:
    """Frames 0 and 1 are identical, 1 to 2 the square moved right: the old mean over an empty
    mask made the direction NaN, which was said as "heading up"."""
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[::4, ::4] for f in squares([200], [200], [230])]
    shapes = [g.astype(np.float32) - float(g.mean()) for g in greys]
    motion = measure_motion(shapes, [False, False])
    assert motion.moving and motion.direction == "right", motion


def test_still_frames_made_by_ffmpeg_say_nothing_moves(engine: CpuEngine, tmp_path: Path) -> None:
    sentences = say(engine, ffmpeg_frames(tmp_path, "280"))
    assert sentences[0] == "Nothing is moving."
    assert not any("heading" in s or "moving on" in s for s in sentences), sentences


def test_one_object_moving_in_an_ffmpeg_clip(engine: CpuEngine, tmp_path: Path) -> None:
    sentences = say(engine, ffmpeg_frames(tmp_path, "60+t*180"))  # 18 px a frame, to the right
    assert sentences[0] == "Something is moving in the centre, heading right.", sentences


def test_two_objects_moving_apart_are_two_things(engine: CpuEngine) -> None:
    frames = squares([260, 380], [220, 420], [180, 460], [140, 500])
    sentences = say(engine, frames)
    assert sentences[0] == (
        "Two things are moving apart: one on the left heading left and one on the right "
        "heading right."
    ), sentences
    towards = say(engine, frames[::-1], "Is anything moving?")
    assert towards[0].startswith("Two things are moving towards each other:"), towards


def test_a_repeated_observation_is_said_once_then_only_changes(engine: CpuEngine) -> None:
    left = squares([100], [130], [160], [190])  # on the left, heading right
    first = say(engine, left)
    assert first[0] == "Something is moving on the left, heading right."
    assert len(first) >= 3  # the whole picture the first time: motion, people, colours, light
    # The worker carries the previous commentary as context; the engine remembers the rest.
    # Nothing new: the cycle is skipped (no commentary), so the context stays the first one.
    second = say(engine, left, context=[" ".join(first)])
    assert second == [f"skipped: {UNCHANGED}"]
    third = say(engine, left, context=[" ".join(first)])
    assert third == second  # not the whole description again every other time
    moved = say(engine, squares([480], [510], [540], [570]), context=[" ".join(first)])
    assert moved == ["Something is moving on the right, heading right."]  # only the change
    # A question is answered in full, whatever was said.
    answer = say(engine, left, "Is anyone there?", context=[" ".join(moved)], kind="answer")
    assert answer[0] == "No, no people are visible."
    # No context (the first cycle, or after a new instruction): everything again.
    assert say(engine, left) == first


def test_an_instruction_that_asks_for_repeats_gets_them(engine: CpuEngine) -> None:
    instruction = "Always describe the motion."
    assert asks_for_repeats(instruction) and asks_for_repeats("Tell me every time who is there")
    assert not asks_for_repeats("Describe everything that happens")
    still = squares(*[[300]] * 4)
    first = say(engine, still, instruction)
    second = say(engine, still, instruction, context=[" ".join(first)])
    assert second[0] == "Still nothing is moving."
    assert len(second) == len(first) and all(s.startswith("Still") for s in second), second


@pytest.mark.slow
def test_a_worker_on_a_still_clip_describes_once_then_skips_with_a_reason(
    tmp_path: Path, test_env: dict[str, str], keys: Keys
) -> None:
    clip = tmp_path / "still.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "color=c=0x102060:s=640x360:r=10:d=3",
         "-vf", "drawbox=x=260:y=120:w=120:h=120:color=red:t=fill",
         "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    env = {**test_env, "INFERENCE_INTERVAL": "0.2", "CAPTURE_FPS": "4", "CHANGE_THRESHOLD": "0"}
    client = redis.Redis.from_url(test_env["REDIS_URL"])
    events = client.pubsub(ignore_subscribe_messages=True)
    events.subscribe(keys.events_channel("still"))
    procs = [
        LookoutProcess(["worker"], env, "worker-still"),
        LookoutProcess(["producer", "--source", "still", "--url", str(clip)], env, "producer"),
    ]
    skipped: list[CycleSkipped] = []
    try:
        deadline = time.monotonic() + 60
        while len(skipped) < 3:
            assert time.monotonic() < deadline, procs[0].log()
            message = events.get_message(timeout=0.2)
            if message is not None:
                event = decode_message(message["data"])
                if isinstance(event, CycleSkipped):
                    skipped.append(event)
    finally:
        for proc in reversed(procs):
            assert proc.stop() in (0, -signal.SIGTERM), proc.log()
        events.close()
    texts = [
        CommentaryRecord.from_fields(fields).text
        for _, fields in client.xrange(keys.history("still"))
    ]
    # Said once; each later cycle is a skip with its reason, not a "no change" commentary.
    assert len(texts) == 1 and texts[0].startswith("Nothing is moving."), texts
    assert "red" in texts[0] and "heading" not in texts[0]
    assert all(e.reason == UNCHANGED and e.worker for e in skipped), skipped
    stats = SourceStats.from_fields(client.hgetall(keys.worker_stats("still")))
    assert stats.skipped >= 3 and stats.cycles == 1, stats


def test_a_new_instruction_starts_the_memory_afresh_even_with_context_left() -> None:
    from worker.engines.cpu_memory import Memory

    memory = Memory()
    said = memory.for_source("cam", "Describe the video.", ["A red square."])
    said.record("colours", "A red square.")
    assert memory.for_source("cam", "Describe the video.", ["A red square."]) is said
    fresh = memory.for_source("cam", "Which colours do you see?", ["A red square."])
    assert fresh is not said and not fresh.repeats("colours", "A red square.")
