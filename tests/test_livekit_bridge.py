"""The LiveKit bridge against real Redis and in-process rooms carrying real SDK objects
(issue 16): speech, video and commentary out; a camera in as the source's producer; rooms
shared between bridges; one unreachable room never touching another."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import cv2
import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis
from livekit import rtc

from api.sse import sse
from bridge.camera import CameraIn, frames_of
from bridge.livekit_room import LiveKitRoom
from bridge.room import BridgeRoom
from bridge.service import Bridge
from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.livekit_rooms import livekit_sources
from shared.messages import PCM_RATE, AudioChunk, CycleInterrupted, CycleStarted, TextChunk
from shared.records import FrameRecord
from shared.settings import Settings
from shared.source_control import DesiredSource, encode_desired
from shared.source_urls import SourceOptions
from shared.sources import SourceRegistry
from shared.status_records import LivekitBeat, ProducerStatus
from tests.helpers import free_port
from tests.livekit_support import DataMessage, InProcessRoom, InProcessRooms, rgba_frame
from tests.test_api_support import add_frame, make_jpeg
from tests.worker_support import fast_settings, until

pytestmark = pytest.mark.usefixtures("livekit_handles_released")

FRAME = PCM_RATE // 50
SECRET = "bridge-test-secret-that-is-never-shown"


def bridge_settings(test_env: dict[str, str], **overrides: str) -> Settings:
    values = {
        "LIVEKIT_URL": "ws://127.0.0.1:9",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": SECRET,
        "CLAIM_TTL": "1",
        "RECONNECT_DELAY": "0.05",
        "MAX_RECONNECT_DELAY": "0.4",
        "CAPTURE_FPS": "10",
        **overrides,
    }
    return fast_settings(test_env, **values)


@contextlib.asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[Bridge]:
    task = asyncio.create_task(bridge.run(handle_signals=False))
    try:
        yield bridge
    finally:
        bridge.shutting_down.set()
        await asyncio.wait_for(task, 15)


async def register(redis: aioredis.Redis, keys: Keys, *names: str) -> None:
    for name in names:
        await SourceRegistry(redis, keys, "describe").register(name)


async def joined(rooms: InProcessRooms, name: str) -> InProcessRoom:
    await until(lambda: name in rooms.rooms and rooms.rooms[name].published.is_set())
    return rooms.rooms[name]


async def subscribed(bridge: Bridge, source: str) -> None:
    def ready() -> bool:
        served = bridge.served.get(source)
        session = served.session if served else None
        sub = session.router.subscription if session else None
        return sub is not None and sub.connected.is_set()

    await until(ready)


async def test_a_room_gets_commentary_speech_and_video(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = bridge_settings(test_env)
    await register(redis_client, keys, "cam")
    rooms = InProcessRooms()
    async with running(Bridge(redis_client, settings, rooms, "b1")) as bridge:
        room = await joined(rooms, "lookout-cam")
        await subscribed(bridge, "cam")
        pub = SourcePublisher(redis_client, keys, "cam")
        # Commentary: each data message is exactly the JSON of the SSE event's `data:` line.
        started = CycleStarted(source="cam", cycle="c1", instruction="describe")
        chunk = TextChunk(source="cam", cycle="c1", seq=0, text="A red car")
        await pub.event(started)
        await pub.text(chunk)
        for message, event in ((started, "cycle"), (chunk, "chunk")):
            got = await asyncio.wait_for(room.data.get(), 10)
            data_line = sse(event, message).split(b"\ndata: ")[1].rstrip(b"\n")
            assert got.payload == data_line and got.to is None
        assert msgspec.json.decode(data_line)["text"] == "A red car"
        # Speech: what the worker publishes is what a subscriber hears, in order.
        heard = room.audio_stream()
        speech = np.arange(1, FRAME * 10 + 1, dtype=np.int16)
        await pub.audio(AudioChunk(source="cam", cycle="c1", seq=0, pcm=speech.tobytes()))
        samples: list[np.ndarray] = []

        async def listen(enough: int) -> np.ndarray:
            async for event in heard:
                samples.append(np.frombuffer(event.frame.data, np.int16).copy())
                joined_up = np.concatenate(samples)
                if np.count_nonzero(joined_up) >= enough:
                    return joined_up
            raise AssertionError("audio stream ended")

        got_audio = await asyncio.wait_for(listen(len(speech)), 15)
        # Every sample, in order (a stall of this loaded machine may insert silence: the SDK
        # fills an underrun, which the pacer's lead makes rare, not impossible).
        assert got_audio[got_audio != 0].tolist() == speech.tolist()
        # Video: the newest frame of the stream, as an RGBA frame of its size.
        seen = room.video_stream()
        await add_frame(redis_client, keys, "cam", 1, make_jpeg(2))

        async def first_frame() -> rtc.VideoFrame:
            async for event in seen:  # a new track starts with a black frame of its full size
                if event.frame.width != settings.max_frame_edge:
                    return event.frame
            raise AssertionError("video stream ended")

        frame = await asyncio.wait_for(first_frame(), 15)
        assert (frame.width, frame.height) == (320, 180)
        assert np.frombuffer(frame.data, np.uint8).reshape(180, 320, 4)[70:90, :, :3].max() > 200
        await seen.aclose()
        await heard.aclose()


async def test_an_interrupted_cycle_stops_speaking_at_once(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = bridge_settings(test_env)
    await register(redis_client, keys, "cam")
    rooms = InProcessRooms()
    async with running(Bridge(redis_client, settings, rooms, "b1")) as bridge:
        await joined(rooms, "lookout-cam")
        await subscribed(bridge, "cam")
        session = bridge.served["cam"].session
        assert session is not None
        pub = SourcePublisher(redis_client, keys, "cam")
        long_speech = np.full(PCM_RATE * 30, 5, np.int16).tobytes()  # 30 s
        await pub.audio(AudioChunk(source="cam", cycle="c9", seq=0, pcm=long_speech))
        await until(lambda: session.speech.seconds > 20)
        await pub.event(CycleInterrupted(source="cam", cycle="c9", text="cut", history_id="1-0"))
        await until(lambda: session.speech.seconds == 0)
        assert session.router.cut_bytes > PCM_RATE * 2 * 20


async def test_a_camera_in_the_room_becomes_the_sources_producer(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    # A source wanted before it exists: the camera creates it.
    settings = bridge_settings(test_env, LIVEKIT_SOURCES="phone", MAX_FRAME_EDGE="256")
    rooms = InProcessRooms()
    async with running(Bridge(redis_client, settings, rooms, "b1")):
        room = await joined(rooms, "lookout-phone")
        camera = room.add_camera("alice", 640, 360)
        picture = cv2.imdecode(np.frombuffer(make_jpeg(7, 640, 360), np.uint8), cv2.IMREAD_COLOR)
        frame = rgba_frame(picture)

        async def count() -> int:
            camera.capture_frame(frame)
            return int(await redis_client.xlen(keys.frames("phone")))

        for _ in range(300):
            if await count() >= 3:
                break
            await asyncio.sleep(0.05)
        entries = await redis_client.xrange(keys.frames("phone"))
        records = [FrameRecord.from_fields(fields) for _, fields in entries]
        assert len(records) >= 3
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert (records[0].width, records[0].height) == (256, 144)  # within MAX_FRAME_EDGE
        status = ProducerStatus.from_fields(
            await redis_client.hgetall(keys.producer_status("phone"))
        )
        assert (status.state, status.kind, status.url) == ("live", "livekit", "livekit://alice")
        claim = (await redis_client.get(keys.producer_claim("phone"))).decode()
        assert claim == "livekit b1 alice"
        assert await SourceRegistry(redis_client, keys, "d").exists("phone")
        # A second camera is refused, and told so on the data topic, to it alone.
        room.add_camera("bob")
        refusal = await asyncio.wait_for(addressed(room, "bob"), 10)
        notice = msgspec.json.decode(refusal.payload)
        assert (notice["type"], notice["what"]) == ("notice", "camera_refused")
        assert notice["detail"] == "source 'phone' is already fed by the LiveKit camera of alice"
        # The camera leaves: status stopped, claim released.
        room.remove_camera("alice")
        await until_async(lambda: _state(redis_client, keys, "phone"), "stopped")
        assert await redis_client.get(keys.producer_claim("phone")) is None


async def addressed(room: InProcessRoom, identity: str) -> DataMessage:
    """The next data message sent to `identity` alone (those to everyone are skipped)."""
    while True:
        message = await room.data.get()
        if message.to is not None:
            assert message.to == [identity]
            return message


async def _state(redis: aioredis.Redis, keys: Keys, source: str) -> str:
    raw = await redis.hget(keys.producer_status(source), "state")  # type: ignore[misc]
    return raw.decode() if raw else ""


async def until_async(read: object, want: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got = await read()  # type: ignore[operator]
        if got == want:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"wanted {want!r}, last saw {got!r}")
        await asyncio.sleep(0.05)


async def test_a_camera_is_refused_while_a_producer_holds_the_source(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = bridge_settings(test_env)
    await register(redis_client, keys, "door")
    await redis_client.set(keys.producer_claim("door"), "sup1 capture:door:1", px=60_000)
    rooms = InProcessRooms()
    async with running(Bridge(redis_client, settings, rooms, "b1")):
        room = await joined(rooms, "lookout-door")
        room.add_camera("mallory")
        refusal = await asyncio.wait_for(addressed(room, "mallory"), 10)
        detail = msgspec.json.decode(refusal.payload)["detail"]
        assert detail == "source 'door' is already fed by a producer supervisor"  # no ids leak
        assert await redis_client.xlen(keys.frames("door")) == 0
        assert (await redis_client.get(keys.producer_claim("door"))) == b"sup1 capture:door:1"


async def test_rooms_are_shared_and_taken_over_when_a_bridge_stops(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = bridge_settings(test_env, LIVEKIT_MAX_ROOMS="2")
    await register(redis_client, keys, "a", "b", "c")
    rooms = InProcessRooms()
    first = Bridge(redis_client, settings, rooms, "b1")
    second = Bridge(redis_client, settings, rooms, "b2")
    async with running(first):
        await until(lambda: len(first.served) == 2)  # its limit
        async with running(second):
            await until(lambda: len(second.served) == 1)
            assert set(first.served) | set(second.served) == {"a", "b", "c"}
            assert not set(first.served) & set(second.served)
            beat = LivekitBeat.from_fields(await redis_client.hgetall(keys.livekit_bridge("b2")))
            assert beat.rooms == next(iter(second.served))
            first.shutting_down.set()
            await until(lambda: len(second.served) == 2, within=15)
            assert await redis_client.exists(keys.livekit_bridge("b1")) == 0  # beat deleted
        holders = {n: await redis_client.get(keys.livekit_claim(n)) for n in ("a", "b", "c")}
        assert list(holders.values()).count(None) == 3  # every claim released on shutdown


async def test_an_unreachable_room_retries_with_backoff_and_others_keep_working(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    settings = bridge_settings(test_env, LIVEKIT_URL=closed)
    await register(redis_client, keys, "good", "bad")
    attempts: list[str] = []

    def make(name: str) -> BridgeRoom:
        attempts.append(name)
        if name == "lookout-bad":
            return LiveKitRoom(settings, name, "b1")  # the real room, on a closed port
        return InProcessRoom(name)

    rooms = InProcessRooms(make)
    async with running(Bridge(redis_client, settings, rooms, "b1")) as bridge:
        room = await joined(rooms, "lookout-good")
        await until(lambda: attempts.count("lookout-bad") >= 3, within=20)
        error = bridge.served["bad"].error
        assert "unreachable" in error and closed in error
        assert SECRET not in error
        assert bridge.served["good"].error == "" and room.joins == 1  # never disturbed
        beat = LivekitBeat.from_fields(await redis_client.hgetall(keys.livekit_bridge("b1")))
        assert beat.rooms == "bad,good" and "bad: LiveKit at" in beat.errors


async def test_which_sources_get_a_room(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    await register(redis_client, keys, "a", "b", "c")

    async def want(sources: str, options: dict[str, bool]) -> list[str]:
        await redis_client.delete(keys.producer_desired)
        for name, value in options.items():
            entry = DesiredSource(name=name, url="x.mp4", options=SourceOptions(livekit=value))
            await redis_client.hset(keys.producer_desired, name, encode_desired(entry))  # type: ignore[misc]
        return await livekit_sources(
            redis_client, bridge_settings(test_env, LIVEKIT_SOURCES=sources)
        )

    assert await want("*", {}) == ["a", "b", "c"]
    assert await want("*", {"b": False}) == ["a", "c"]
    assert await want("", {}) == []
    assert await want("", {"c": True}) == ["c"]
    assert await want("a,phone, bad name!", {}) == ["a", "phone"]  # listed before it exists
    assert await want("a", {"a": False}) == []


async def test_a_stalled_camera_shows_reconnecting_and_one_that_loses_its_claim_stops(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings = bridge_settings(test_env, STALL_TIMEOUT="0.5", MAX_FRAME_EDGE="256")
    camera = CameraIn(redis_client, settings, "desk", "b1", "carol")
    await camera.take()
    source = rtc.VideoSource(320, 180)
    track = rtc.LocalVideoTrack.create_video_track("cam", source)
    stream = rtc.VideoStream(track, capacity=1, format=rtc.VideoBufferType.RGBA)
    stop = asyncio.Event()
    running = asyncio.create_task(camera.run(frames_of(stream), stop))
    picture = cv2.imdecode(np.frombuffer(make_jpeg(1), np.uint8), cv2.IMREAD_COLOR)
    try:
        while camera.published < 2:
            source.capture_frame(rgba_frame(picture))
            await asyncio.sleep(0.05)
        # No frames for longer than STALL_TIMEOUT: the status says so, the claim is kept.
        await until_async(lambda: _state(redis_client, keys, "desk"), "reconnecting")
        error = await redis_client.hget(keys.producer_status("desk"), "error")  # type: ignore[misc]
        assert error is not None and error.startswith(b"no frame for")
        # Frames again: live again.
        source.capture_frame(rgba_frame(picture))
        await until_async(lambda: _state(redis_client, keys, "desk"), "live")
        # Someone else takes the claim (an operator, a supervisor after a Redis restart):
        # the camera stops feeding within a renewal period.
        await redis_client.set(keys.producer_claim("desk"), "sup9 capture:desk:1", px=60_000)
        assert await asyncio.wait_for(running, 10) == "claim lost"
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
        await stream.aclose()
    assert await _state(redis_client, keys, "desk") == "stopped"
    assert (
        await redis_client.get(keys.producer_claim("desk")) == b"sup9 capture:desk:1"
    )  # not ours to free
