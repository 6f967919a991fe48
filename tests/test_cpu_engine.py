"""The CPU engine describes what is really in the frames: drawn scenes and real sample photos."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import skimage.data

from shared.settings import Settings
from worker.engines import build_engine
from worker.engines.base import Chunk, EngineError, EngineRequest, NothingNew, WindowFrame
from worker.engines.cpu import CpuEngine
from worker.engines.cpu_analysis import Detectors

Image = npt.NDArray[np.uint8]
H, W = 360, 640


@pytest.fixture(scope="module")
def engine() -> CpuEngine:
    engine = CpuEngine(Settings(enable_tts=False))
    engine.load()
    return engine


def request(
    images: Sequence[Image], instruction: str = "Describe the video.", **kw: object
) -> EngineRequest:
    frames = [WindowFrame(seq=n, ts=float(n), image=image) for n, image in enumerate(images)]
    return EngineRequest(source="cam", frames=frames, instruction=instruction, **kw)  # type: ignore[arg-type]


def say(
    engine: CpuEngine,
    images: Sequence[Image],
    instruction: str = "Describe the video.",
    **kw: object,
) -> list[str]:
    chunks = list(engine.stream(request(images, instruction, **kw), threading.Event()))
    return [chunk.text.strip() for chunk in chunks]


def blank(colour: tuple[int, int, int] = (0, 0, 0)) -> Image:
    return np.full((H, W, 3), colour, np.uint8)


def photo(name: str) -> Image:
    """A scikit-image sample photo (shipped in the wheel), letterboxed into a 640x360 frame."""
    rgb = np.asarray(getattr(skimage.data, name)())
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    scale = min(W / bgr.shape[1], H / bgr.shape[0])
    size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
    small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    frame = blank()
    y, x = (H - size[1]) // 2, (W - size[0]) // 2
    frame[y : y + size[1], x : x + size[0]] = small
    return frame


def silhouette(frame: Image, cx: int, height: int = 200) -> Image:
    """Draw a dark standing human figure (head, torso, arms, legs) centred at `cx`."""
    u, top = height / 8, (H - height) // 2
    colour = (30, 30, 60)

    def poly(*points: tuple[float, float]) -> None:
        cv2.fillPoly(
            frame, [np.array([(cx + x * u, top + y * u) for x, y in points], np.int32)], colour
        )

    cv2.ellipse(frame, (cx, int(top + u / 2)), (int(u * 0.38), int(u / 2)), 0, 0, 360, colour, -1)
    poly((-0.15, 0.9), (0.15, 0.9), (0.15, 1.2), (-0.15, 1.2))
    poly((-0.95, 1.2), (0.95, 1.2), (0.7, 4.2), (-0.7, 4.2))
    for s in (-1, 1):
        poly((s * 0.95, 1.25), (s * 1.15, 1.5), (s * 1.05, 4.3), (s * 0.8, 4.3), (s * 0.75, 1.6))
        poly((s * 0.05, 4.1), (s * 0.7, 4.1), (s * 0.6, 7.8), (s * 0.15, 7.8))
    return frame


def field() -> Image:
    noise = np.random.default_rng(0).integers(-12, 12, (H, W, 3))
    return np.clip(np.array((120, 160, 120)) + noise, 0, 255).astype(np.uint8)


def moving_ball(xs: Sequence[int], y: int = 180) -> list[Image]:
    frames = []
    for x in xs:
        frame = blank((40, 120, 40))
        cv2.circle(frame, (x, y), 40, (255, 0, 0), -1)
        frames.append(frame)
    return frames


def test_red_square_on_black_is_called_red(engine: CpuEngine) -> None:
    frame = blank()
    cv2.rectangle(frame, (270, 130), (370, 230), (0, 0, 255), -1)
    text = " ".join(say(engine, [frame] * 4, "What colours do you see?"))
    assert text.startswith("The picture is mostly black, with some red.")
    assert "blue" not in text and "green" not in text


@pytest.mark.parametrize(
    ("first", "last", "words"),
    [
        (255, 0, "got much darker and is now very dark"),
        (0, 255, "got much brighter and is now bright"),
    ],
)
def test_light_change_is_named_and_is_not_motion(
    engine: CpuEngine, first: int, last: int, words: str
) -> None:
    frames = [blank((first,) * 3)] * 2 + [blank((last,) * 3)] * 2
    sentences = say(engine, frames, "How is the light?")
    assert words in sentences[0]
    assert "Nothing is moving." in sentences


@pytest.mark.parametrize(
    ("xs", "where", "heading"),
    [
        ([100, 220, 340, 460], "on the right", "heading right"),
        ([540, 420, 300, 180], "on the left", "heading left"),
        ([150, 170], "on the left", "heading right"),  # two frames: optical flow alone
    ],
)
def test_moving_object_gives_place_and_direction(
    engine: CpuEngine, xs: list[int], where: str, heading: str
) -> None:
    sentences = say(engine, moving_ball(xs), "Is anything moving?")
    assert sentences[0] == f"Something is moving {where}, {heading}."


@pytest.mark.parametrize(
    ("name", "step", "heading"),
    [("coffee", (16, 0), "left"), ("coffee", (-16, 0), "right"), ("astronaut", (0, 12), "up")],
)
def test_a_camera_pan_is_told_apart_from_a_moving_object(
    engine: CpuEngine, name: str, step: tuple[int, int], heading: str
) -> None:
    """Crops of a real photo, the crop sliding like a panning camera."""
    big = cv2.resize(cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR), (1280, 1280))
    frames = [big[300 + n * step[1] :, 300 + n * step[0] :][:H, :W].copy() for n in range(4)]
    sentences = say(engine, frames, "Is the camera moving?")
    assert sentences[0] == f"The camera is moving: the whole view shifts {heading}."


def test_identical_frames_have_no_motion(engine: CpuEngine) -> None:
    sentences = say(engine, moving_ball([300] * 4), "Describe the motion.")
    assert sentences[0] == "Nothing is moving."
    assert 2 <= len(sentences) <= 4


def test_astronaut_photo_has_one_face_in_the_centre(engine: CpuEngine) -> None:
    sentences = say(engine, [photo("astronaut")] * 4, "how many faces are there")
    assert sentences[0] == "One face is visible, in the centre."
    assert "One person is visible." in sentences  # a face is a person even if HOG misses the body


def test_four_real_faces_are_counted(engine: CpuEngine) -> None:
    frame = blank((128, 128, 128))
    faces = skimage.data.lfw_subset()[:4]  # type: ignore[no-untyped-call]  # first 100 are faces
    for n, face in enumerate(faces):
        tile = cv2.resize((face * 255).astype(np.uint8), (120, 120), interpolation=cv2.INTER_CUBIC)
        frame[100:220, 20 + 160 * n : 140 + 160 * n] = tile[..., None]
    assert say(engine, [frame] * 2, "Count the faces.")[0].startswith("Four faces are visible")


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_photos_without_people_say_none(engine: CpuEngine, name: str) -> None:
    sentences = say(engine, [photo(name)] * 4, "Is anyone there?")
    assert "No people are visible." in sentences


def test_drawn_people_are_counted_by_hog(engine: CpuEngine) -> None:
    one = silhouette(field(), 320)
    assert say(engine, [one] * 2, "How many people are there?")[0] == "One person is visible."
    two = silhouette(silhouette(field(), 180), 460)
    assert say(engine, [two] * 2, "How many people are there?")[0] == "Two people are visible."
    assert Detectors().people(field()) == 0


def test_a_cut_to_another_scene_is_a_scene_change_not_motion(engine: CpuEngine) -> None:
    frames = [photo("coffee")] * 2 + [photo("astronaut")] * 2
    sentences = say(engine, frames, "Did the scene change? Is anything moving?")
    assert sentences[:2] == [
        "The scene changed completely during these frames.",
        "Nothing is moving.",
    ]
    same = say(engine, [photo("coffee")] * 4, "Did the scene change?")
    assert same[0] == "The scene stays the same."


def test_a_question_is_answered_first(engine: CpuEngine) -> None:
    empty = say(engine, [photo("coffee")] * 2, "Is there anyone in the room?", kind="answer")
    assert empty[0] == "No, no people are visible."
    person = say(engine, [silhouette(field(), 320)] * 2, "Is someone there?", kind="answer")
    assert person[0] == "Yes, one person is visible."
    count = say(engine, [photo("astronaut")] * 2, "How many faces?", kind="answer")
    assert count[0] == "One face is visible, in the centre."
    other = say(engine, [photo("coffee")] * 2, "What brand is the cup?", kind="answer")
    assert other[0].startswith("I can only measure")


def test_the_instruction_picks_the_lead(engine: CpuEngine) -> None:
    frames = moving_ball([100, 220, 340, 460])
    assert say(engine, frames, "Describe the colours")[0].startswith("The picture is mostly green")
    assert say(engine, frames, "Is it dark in here?")[0].startswith("The picture is dark")
    assert say(engine, frames, "Who is there?")[0] == "No people are visible."


def test_a_repeat_of_the_last_commentary_is_left_out(engine: CpuEngine) -> None:
    """More in test_cpu_commentary_truth.py: memory across cycles, asking for repeats."""
    frames = [photo("coffee")] * 4
    first = say(engine, frames)
    with pytest.raises(NothingNew, match="nothing new since the last comment"):
        say(engine, frames, context=[" ".join(first)])  # the worker records a skip
    changed = say(engine, [silhouette(field(), 320)] * 2, context=[" ".join(first)])
    assert changed[0] == "One person is visible."
    assert not set(changed) & set(first)


def test_chunks_join_into_the_commentary_and_respect_max_tokens(engine: CpuEngine) -> None:
    chunks = list(engine.stream(request(moving_ball([100, 300])), threading.Event()))
    assert all(isinstance(c, Chunk) and c.pcm is None for c in chunks)
    joined = "".join(c.text for c in chunks)
    assert joined == " ".join(c.text.strip() for c in chunks)
    assert len(say(engine, moving_ball([100, 300]), max_new_tokens=3)) == 1


def test_cancel_stops_the_stream(engine: CpuEngine) -> None:
    cancel = threading.Event()
    received = []
    for chunk in engine.stream(request([photo("astronaut")] * 4), cancel):
        received.append(chunk)
        cancel.set()
    assert len(received) == 1
    assert list(engine.stream(request([photo("astronaut")]), cancel)) == []


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "no frames"),
        ([np.zeros((360, 640, 3), np.float32)], "not an 8-bit image"),
        ([np.zeros((4, 4, 3), np.uint8)], "at least 8x8"),
        ([np.zeros((360, 640, 2), np.uint8)], "2 channels"),
    ],
)
def test_unusable_frames_get_a_clear_error(
    engine: CpuEngine, images: list[Image], message: str
) -> None:
    with pytest.raises(EngineError, match=message):
        list(engine.stream(request(images), threading.Event()))


def test_mixed_sizes_and_grey_frames_are_accepted(engine: CpuEngine) -> None:
    grey = np.zeros((180, 320), np.uint8)
    sentences = say(engine, [blank(), grey], "Describe the light.")
    assert sentences[0] == "The picture is very dark, and the light is steady."


def test_stream_before_load_is_an_error() -> None:
    with pytest.raises(EngineError, match="not loaded"):
        list(CpuEngine(Settings()).stream(request([blank()]), threading.Event()))


def test_engine_cpu_builds_this_engine() -> None:
    engine = build_engine(Settings(engine="cpu"))
    assert isinstance(engine, CpuEngine)
    info = engine.load()
    assert (info.engine, info.device, info.extra["tts"]) == ("cpu", "cpu", "off")


@pytest.mark.parametrize("size", [(90, 160), (40, 30), (127, 300)])
def test_frames_smaller_than_the_people_detector_window_are_analysed(
    engine: CpuEngine, size: tuple[int, int]
) -> None:
    # OpenCV's HOG segfaults on images smaller than its 64x128 window: the engine must not call it.
    frame = np.full((*size, 3), (0, 0, 220), np.uint8)
    assert engine.measure(request([frame, frame])).people == 0
    assert any("red" in sentence for sentence in say(engine, [frame, frame]))
