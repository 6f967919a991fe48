"""The whole LiveKit path against a real server (issue 16): marker `livekit`, skipped unless
LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET name one (docs/livekit.md shows how to start
the compose profile's server for it). No LiveKit server can run on the machines that wrote
these tests, so they were not run there.

A client joins with a token from the API's minting code, hears the speech, sees the video and
reads the commentary the bridge publishes; then it publishes a camera, whose frames arrive in
the source's Redis stream. Wrong credentials are reported as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import cv2
import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis
from livekit import rtc

from api.livekit_tokens import mint_livekit_token
from bridge.livekit_room import LiveKitRoom, check_server
from bridge.room import RoomError
from bridge.service import Bridge
from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.livekit_rooms import DATA_TOPIC
from shared.messages import PCM_RATE, AudioChunk, TextChunk
from shared.settings import Settings
from shared.sources import SourceRegistry
from tests.livekit_support import rgba_frame
from tests.test_api_support import add_frame, make_jpeg
from tests.worker_support import fast_settings, until

NEEDED = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
pytestmark = [
    pytest.mark.livekit,
    pytest.mark.skipif(
        not all(os.environ.get(name) for name in NEEDED),
        reason="no LiveKit server: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
    ),
]


@pytest.fixture
def lk_settings(test_env: dict[str, str]) -> Settings:
    values = {name: os.environ[name] for name in NEEDED}
    return fast_settings(
        test_env,
        **values,
        LIVEKIT_ROOM_PREFIX=f"test-{os.getpid()}-",
        CLAIM_TTL="2",
        RECONNECT_DELAY="0.2",
        MAX_RECONNECT_DELAY="2",
        CAPTURE_FPS="5",
    )


@contextlib.asynccontextmanager
async def bridge_running(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[Bridge]:
    bridge = Bridge(redis, settings, lambda name: LiveKitRoom(settings, name, "real1"), "real1")
    task = asyncio.create_task(bridge.run(handle_signals=False))
    try:
        yield bridge
    finally:
        bridge.shutting_down.set()
        await asyncio.wait_for(task, 20)


async def test_a_client_gets_speech_video_and_commentary_and_sends_its_camera(
    redis_client: aioredis.Redis, lk_settings: Settings, keys: Keys
) -> None:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    async with bridge_running(redis_client, lk_settings) as bridge:
        await until(lambda: "cam" in bridge.served and bridge.served["cam"].session is not None)
        session = bridge.served["cam"].session
        assert session is not None
        await asyncio.wait_for(session.joined.wait(), 30)
        grant = mint_livekit_token(lk_settings, "cam", publish=True)
        room = rtc.Room()
        tracks: dict[str, rtc.Track] = {}
        data: asyncio.Queue[bytes] = asyncio.Queue()
        room.on("track_subscribed", lambda track, pub, who: tracks.__setitem__(track.kind, track))
        room.on(
            "data_received",
            lambda packet: data.put_nowait(packet.data) if packet.topic == DATA_TOPIC else None,
        )
        await room.connect(lk_settings.livekit_url, grant.token)
        try:
            await until(lambda: len(tracks) == 2, within=30)
            pub = SourcePublisher(redis_client, keys, "cam")
            # Commentary arrives as data on the topic.
            await until(lambda: session.router.subscription is not None)
            assert session.router.subscription is not None
            await asyncio.wait_for(session.router.subscription.connected.wait(), 10)
            await pub.text(TextChunk(source="cam", cycle="c1", seq=0, text="hello room"))
            payload = await asyncio.wait_for(data.get(), 20)
            while msgspec.json.decode(payload).get("type") != "text":
                payload = await asyncio.wait_for(data.get(), 20)
            assert msgspec.json.decode(payload)["text"] == "hello room"
            # Speech: a tone is heard (Opus is lossy: check loudness, not samples).
            heard = rtc.AudioStream(tracks[rtc.TrackKind.KIND_AUDIO], sample_rate=PCM_RATE)
            tone = (np.sin(np.arange(PCM_RATE) * 2 * np.pi * 440 / PCM_RATE) * 12000).astype(
                np.int16
            )
            await pub.audio(AudioChunk(source="cam", cycle="c1", seq=0, pcm=tone.tobytes()))

            async def loud() -> None:
                async for event in heard:
                    if np.abs(np.frombuffer(event.frame.data, np.int16)).max() > 3000:
                        return

            await asyncio.wait_for(loud(), 20)
            await heard.aclose()
            # Video: frames of the source arrive.
            seen = rtc.VideoStream(tracks[rtc.TrackKind.KIND_VIDEO])
            await add_frame(redis_client, keys, "cam", 1, make_jpeg(1, 640, 360))

            async def frame() -> None:
                async for event in seen:
                    if event.frame.width == 640:
                        return

            await asyncio.wait_for(frame(), 20)
            await seen.aclose()
            # Camera in: another source, so the frames above do not mix with these.
            await redis_client.delete(keys.frames("cam"))
            camera = rtc.VideoSource(640, 360)
            track = rtc.LocalVideoTrack.create_video_track("camera", camera)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
            await room.local_participant.publish_track(track, options)
            picture = cv2.imdecode(
                np.frombuffer(make_jpeg(3, 640, 360), np.uint8), cv2.IMREAD_COLOR
            )
            for _ in range(200):
                camera.capture_frame(rgba_frame(picture))
                if await redis_client.xlen(keys.frames("cam")) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert await redis_client.xlen(keys.frames("cam")) >= 2
            claim = await redis_client.get(keys.producer_claim("cam"))
            assert claim is not None and claim.decode().startswith("livekit real1 camera-")
        finally:
            await room.disconnect()


async def test_wrong_credentials_are_reported_as_such(lk_settings: Settings) -> None:
    wrong = fast_settings(
        {"REDIS_URL": lk_settings.redis_url, "KEY_PREFIX": lk_settings.key_prefix},
        LIVEKIT_URL=lk_settings.livekit_url,
        LIVEKIT_API_KEY=lk_settings.livekit_api_key,
        LIVEKIT_API_SECRET="not-the-secret-of-this-server-at-all-0123",
    )
    with pytest.raises(RoomError, match="refused the credentials"):
        await check_server(wrong, "anything")
    await check_server(lk_settings, "anything")  # the right pair passes
