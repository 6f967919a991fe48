"""The real room: the bridge's bot joins a LiveKit server with `rtc.Room`.

Before joining, one Room Service call (`livekit.api`) tells an unreachable server from wrong
credentials, which the WebRTC connect alone reports only vaguely. The bot's token is minted
here with LIVEKIT_API_KEY/LIVEKIT_API_SECRET; the secret never appears in a message or log.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re

import aiohttp
from livekit import api, rtc

from bridge.room import CameraEvent, RoomError
from shared.livekit_rooms import BRIDGE_IDENTITY_PREFIX, DATA_TOPIC
from shared.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
BOT_TOKEN_TTL = datetime.timedelta(hours=1)  # only for joining; a joined session stays


def http_url(url: str) -> str:
    """The Room Service's URL for a ws(s):// signalling URL."""
    return "http" + url[2:] if url.startswith("ws") else url


_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']+")


def redact_tokens(text: str) -> str:
    """`text` with any `access_token=` value masked: the SDK's errors may quote the signalling
    URL, which carries the bot's token (a credential to join, valid BOT_TOKEN_TTL)."""
    return _TOKEN_IN_URL.sub(r"\1***", text)


def describe_server_error(url: str, exc: BaseException) -> str:
    """What an operator should read when the Room Service call failed."""
    if isinstance(exc, api.TwirpError):
        if exc.status in (401, 403) or exc.code in ("unauthenticated", "permission_denied"):
            return (
                f"LiveKit at {url} refused the credentials: check that LIVEKIT_API_KEY and "
                "LIVEKIT_API_SECRET match the server's keys (LIVEKIT_KEYS)"
            )
        return f"LiveKit at {url} answered {exc.status} {exc.code}: {exc.message}"
    return redact_tokens(
        f"LiveKit at {url} is unreachable ({type(exc).__name__}: {exc}); is LIVEKIT_URL right?"
    )


def bot_token(settings: Settings, room: str, bridge_id: str) -> str:
    """The bridge's own token: joins `room` only, publishes tracks and data, subscribes."""
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    return (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        .with_identity(f"{BRIDGE_IDENTITY_PREFIX}-{bridge_id}")
        .with_name("Lookout")
        .with_grants(grants)
        .with_ttl(BOT_TOKEN_TTL)
        .to_jwt()
    )


async def check_server(settings: Settings, room: str) -> None:
    """RoomError if the server cannot be reached or refuses the key and secret."""
    url = settings.livekit_url
    if not (url and settings.livekit_api_key and settings.livekit_api_secret):
        raise RoomError(
            "LiveKit is not configured: set LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET"
        )
    timeout = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT_S)
    try:
        async with api.LiveKitAPI(
            http_url(url),
            settings.livekit_api_key,
            settings.livekit_api_secret,
            timeout=timeout,
            failover=False,
        ) as lk:
            await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
    except (api.TwirpError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise RoomError(describe_server_error(url, exc)) from None


class LiveKitRoom:
    """A `BridgeRoom` on a LiveKit server."""

    def __init__(self, settings: Settings, name: str, bridge_id: str) -> None:
        self.name = name
        self.cameras: asyncio.Queue[CameraEvent] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self._settings = settings
        self._bridge_id = bridge_id
        self._room = rtc.Room()
        self._room.on("track_subscribed", self._subscribed)
        self._room.on("track_unsubscribed", self._unsubscribed)
        self._room.on("disconnected", lambda *_: self.disconnected.set())

    def _subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if _is_camera(track, publication):
            self.cameras.put_nowait(CameraEvent(participant.identity, track))

    def _unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if _is_camera(track, publication):
            self.cameras.put_nowait(CameraEvent(participant.identity, None))

    async def connect(self) -> None:
        await check_server(self._settings, self.name)
        token = bot_token(self._settings, self.name, self._bridge_id)
        options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            await self._room.connect(self._settings.livekit_url, token, options)
        except rtc.ConnectError as exc:
            raise RoomError(
                f"could not join room {self.name!r} at {self._settings.livekit_url}: "
                + redact_tokens(str(exc))
            ) from None

    async def publish(self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack) -> None:
        source = (
            rtc.TrackSource.SOURCE_MICROPHONE
            if isinstance(track, rtc.LocalAudioTrack)
            else rtc.TrackSource.SOURCE_CAMERA
        )
        await self._room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=source)
        )

    async def send_data(self, payload: bytes, to: list[str] | None = None) -> None:
        await self._room.local_participant.publish_data(
            payload, reliable=True, topic=DATA_TOPIC, destination_identities=to or []
        )

    async def close(self) -> None:
        await self._room.disconnect()


def _is_camera(track: rtc.Track, publication: rtc.RemoteTrackPublication) -> bool:
    """A participant's camera video (not a screen share, not audio)."""
    return (
        track.kind == rtc.TrackKind.KIND_VIDEO
        and publication.source == rtc.TrackSource.SOURCE_CAMERA
    )
