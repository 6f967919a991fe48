"""`POST /api/sources/{name}/livekit-token` against a real `lookout api` (issue 16).

Every token is decoded and verified with the secret by the SDK's own `TokenVerifier`: one room,
the caller's scope deciding publish rights, no data publishing, a short life. Then the abuse:
no key, a wrong key, a media token, a view key asking to publish, another room through the body,
unknown or LiveKit-less sources, a forged or re-signed token.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from livekit.api import AccessToken, TokenVerifier, VideoGrants

from shared.keys import Keys
from shared.source_control import DesiredSource, encode_desired
from shared.source_urls import SourceOptions
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer

VIEW = "lk-view-key-1"
CONTROL = "lk-control-key-2"
VIEW_H = {"Authorization": f"Bearer {VIEW}"}
CONTROL_H = {"Authorization": f"Bearer {CONTROL}"}
LK_KEY = "lookoutkey"
LK_SECRET = "a-livekit-secret-of-at-least-32-characters"
TTL = 120


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"lkt{os.getpid()}"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, prefix: str) -> Iterator[ApiServer]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": prefix,
        "API_KEYS": f"{VIEW}:view,{CONTROL}:control",
        "LIVEKIT_URL": "ws://livekit:7880",
        "LIVEKIT_PUBLIC_URL": "wss://rtc.example.org",
        "LIVEKIT_API_KEY": LK_KEY,
        "LIVEKIT_API_SECRET": LK_SECRET,
        "LIVEKIT_ROOM_PREFIX": "lo-",
        "LIVEKIT_SOURCES": "*",
        "LIVEKIT_TOKEN_TTL": str(TTL),
        "LOG_LEVEL": "DEBUG",
    }
    api = ApiServer(env, "api-livekit")
    yield api
    api.stop()


@pytest.fixture
async def http(server: ApiServer, redis_url: str, prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    for name in ("cam1", "cam2", "quiet"):
        await SourceRegistry(redis, keys, "describe").register(name)
    off = DesiredSource(name="quiet", url="x.mp4", options=SourceOptions(livekit=False))
    await redis.hset(keys.producer_desired, "quiet", encode_desired(off))  # type: ignore[misc]
    await redis.aclose()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def room_token(
    http: httpx.AsyncClient, source: str, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await http.post(f"/api/sources/{source}/livekit-token", json=body, headers=headers)


async def test_a_view_key_gets_a_subscribe_only_token_for_one_room(http: httpx.AsyncClient) -> None:
    before = time.time()
    response = await room_token(http, "cam1", VIEW_H)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"] == "wss://rtc.example.org" and body["room"] == "lo-cam1"
    assert body["can_publish"] is False and body["identity"].startswith("viewer-")
    claims = TokenVerifier(LK_KEY, LK_SECRET).verify(body["token"])
    grants = claims.video
    assert grants is not None
    assert (grants.room_join, grants.room, grants.can_subscribe) == (True, "lo-cam1", True)
    assert grants.can_publish is False and grants.can_publish_data is False
    assert not grants.room_admin and not grants.room_create and not grants.room_list
    assert claims.identity == body["identity"]
    expires = jwt.decode(body["token"], options={"verify_signature": False})["exp"]
    assert before + TTL - 5 <= expires <= time.time() + TTL + 5
    assert abs(body["expires_at"] - expires) < 2


async def test_a_control_key_may_publish_a_camera_and_nothing_else(http: httpx.AsyncClient) -> None:
    response = await room_token(http, "cam2", CONTROL_H, publish=True)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["can_publish"] is True and body["identity"].startswith("camera-")
    grants = TokenVerifier(LK_KEY, LK_SECRET).verify(body["token"]).video
    assert grants is not None
    assert grants.room == "lo-cam2" and grants.can_publish is True
    assert grants.can_publish_sources == ["camera"]  # no microphone, no screen share
    assert grants.can_publish_data is False  # the commentary topic is the bridge's alone
    # Without asking, a control key gets a watching token too.
    plain = (await room_token(http, "cam2", CONTROL_H)).json()
    assert plain["can_publish"] is False


async def test_identities_are_unique_and_never_the_bridges(http: httpx.AsyncClient) -> None:
    identities = {(await room_token(http, "cam1", VIEW_H)).json()["identity"] for _ in range(5)}
    assert len(identities) == 5
    assert not any(i.startswith("lookout-bridge") for i in identities)


async def test_without_a_key_or_with_a_wrong_one_there_is_no_token(http: httpx.AsyncClient) -> None:
    assert (await room_token(http, "cam1", {})).status_code == 401
    assert (await room_token(http, "cam1", {"Authorization": "Bearer nope"})).status_code == 401
    response = await http.post(f"/api/sources/cam1/livekit-token?key={CONTROL}", json={})
    assert response.status_code == 401  # keys are never taken from URLs


async def test_a_media_token_cannot_mint_a_room_token(http: httpx.AsyncClient) -> None:
    minted = await http.post(
        "/api/tokens", json={"source": "cam1", "scope": "ingest"}, headers=CONTROL_H
    )
    media = minted.json()["token"]
    response = await http.post(f"/api/sources/cam1/livekit-token?token={media}", json={})
    assert response.status_code == 401
    assert "media tokens work only on media URLs" in response.json()["error"]


async def test_a_view_key_may_not_publish(http: httpx.AsyncClient) -> None:
    response = await room_token(http, "cam1", VIEW_H, publish=True)
    assert response.status_code == 403
    assert "only a control key may publish" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [{"room": "lo-cam2"}, {"identity": "lookout-bridge-x"}, {"ttl": 86400}, {"publish": "yes"}],
)
async def test_the_body_cannot_choose_room_identity_or_lifetime(
    http: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await room_token(http, "cam1", CONTROL_H, **body)
    assert response.status_code in (400, 422), response.text


async def test_sources_without_a_room_get_no_token(http: httpx.AsyncClient) -> None:
    unknown = await room_token(http, "nosuch", CONTROL_H)
    assert unknown.status_code == 404
    off = await room_token(http, "quiet", CONTROL_H)
    assert off.status_code == 409 and "not brought to LiveKit" in off.json()["error"]
    bad = await http.post("/api/sources/..%2Fcam1/livekit-token", json={}, headers=CONTROL_H)
    assert bad.status_code in (404, 422)


async def test_tokens_signed_otherwise_do_not_verify(http: httpx.AsyncClient) -> None:
    token = (await room_token(http, "cam1", VIEW_H)).json()["token"]
    with pytest.raises(jwt.InvalidSignatureError):
        TokenVerifier(LK_KEY, "another-secret-of-at-least-32-characters!").verify(token)
    with pytest.raises(jwt.InvalidIssuerError):
        TokenVerifier("otherkey", LK_SECRET).verify(token)
    # A client cannot widen its own token: changing the room breaks the signature.
    head, payload, signature = token.split(".")
    forged = (
        AccessToken(LK_KEY, "x" * 40)
        .with_identity("viewer-1")
        .with_grants(VideoGrants(room_join=True, room="lo-cam2"))
    )
    forged_payload = forged.to_jwt().split(".")[1]
    with pytest.raises(jwt.InvalidSignatureError):
        TokenVerifier(LK_KEY, LK_SECRET).verify(f"{head}.{forged_payload}.{signature}")


async def test_the_secret_is_never_in_the_api_log(
    server: ApiServer, http: httpx.AsyncClient
) -> None:
    await room_token(http, "cam1", CONTROL_H, publish=True)
    assert LK_SECRET not in server.proc.log()


@pytest.fixture(scope="module")
def unconfigured(redis_server: RedisServer, prefix: str) -> Iterator[ApiServer]:
    api = ApiServer({"REDIS_URL": redis_server.url, "KEY_PREFIX": prefix}, "api-no-livekit")
    yield api
    api.stop()


async def test_without_livekit_settings_the_route_says_so(unconfigured: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=unconfigured.url, timeout=10) as client:
        response = await client.post("/api/sources/cam1/livekit-token", json={})
    assert response.status_code == 400  # not applicable here, like /api/tokens without keys
    assert "LiveKit is not configured" in response.json()["error"]
