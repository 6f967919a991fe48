"""Media tokens and keys in URLs, against a real `lookout api` process (issue 12, findings 4, 8).

A token opens only the media routes of its one source; it never mints a token, never changes
anything; its expiry is parsed strictly; keys are never accepted in URLs and never logged, in
whatever encoding a client spells the parameter.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets

from api.auth import KeyRing, parse_keys
from api.redact import redact
from api.tokens import TokenError, issue, verify
from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer, add_frame, make_jpeg, wait_until

VIEW = "tok-view-secret-1"
CONTROL = "tok-control-secret-2"
VIEW_H = {"Authorization": f"Bearer {VIEW}"}
CONTROL_H = {"Authorization": f"Bearer {CONTROL}"}
MAX_TTL = 120


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[ApiServer]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": f"tok{os.getpid()}",
        "API_KEYS": f"{VIEW}:view,{CONTROL}:control",
        "MEDIA_TOKEN_TTL": "60",
        "MEDIA_TOKEN_MAX_TTL": str(MAX_TTL),
        "LOG_LEVEL": "INFO",
    }
    api = ApiServer(env, "api-tokens")
    yield api
    api.stop()


@pytest.fixture
async def http(server: ApiServer, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(f"tok{os.getpid()}")
    for name in ("cam1", "cam2"):
        await SourceRegistry(redis, keys, "describe").register(name, "clip.mp4")
        await add_frame(redis, keys, name, 1, make_jpeg(1))
    await redis.aclose()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def mint(http: httpx.AsyncClient, headers: dict[str, str], **body: object) -> str:
    response = await http.post("/api/tokens", json=body, headers=headers)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def test_a_token_opens_the_media_of_its_own_source_only(http: httpx.AsyncClient) -> None:
    token = await mint(http, CONTROL_H, source="cam1")
    frame = await http.get(f"/api/sources/cam1/frame?token={token}")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    async with http.stream("GET", f"/api/sources/cam1/events?token={token}") as events:
        assert events.status_code == 200
    other = await http.get(f"/api/sources/cam2/frame?token={token}")
    assert other.status_code == 403 and "for source 'cam1' only" in other.json()["error"]
    async with http.stream("GET", f"/api/sources/cam2/mjpeg?token={token}") as mjpeg:
        assert mjpeg.status_code == 403


async def test_a_control_keys_token_changes_nothing(http: httpx.AsyncClient) -> None:
    token = await mint(http, CONTROL_H, source="cam1")
    q = f"?token={token}"
    refused = [
        await http.put(f"/api/sources/cam1/instruction{q}", json={"instruction": "steal"}),
        await http.post(f"/api/sources{q}", json={"name": "x", "url": "samples/a.mp4"}),
        await http.delete(f"/api/sources/cam1{q}"),
        await http.post(f"/api/sources/cam1/ask{q}", json={"question": "what?"}),
        await http.get(f"/api/sources{q}"),
        await http.get(f"/api/status{q}"),
        await http.get(f"/metrics{q}"),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert all("only on media URLs" in r.json()["error"] for r in refused if r.content[:1] == b"{")


async def test_a_token_cannot_mint_a_token(http: httpx.AsyncClient) -> None:
    token = await mint(http, CONTROL_H, source="cam1")
    renewed = await http.post(f"/api/tokens?token={token}", json={"source": "cam1"})
    assert renewed.status_code == 401 and "only on media URLs" in renewed.json()["error"]


async def test_tokens_scope_lifetime_and_who_may_mint_ingest(http: httpx.AsyncClient) -> None:
    body = (await http.post("/api/tokens", json={"source": "cam1"}, headers=VIEW_H)).json()
    assert body["scope"] == "media" and body["source"] == "cam1" and VIEW not in body["token"]
    assert time.time() + 50 < body["expires_at"] <= time.time() + 61
    view_ingest = await http.post(
        "/api/tokens", json={"source": "cam1", "scope": "ingest"}, headers=VIEW_H
    )
    assert view_ingest.status_code == 403
    too_long = await http.post(
        "/api/tokens", json={"source": "cam1", "ttl": MAX_TTL + 1}, headers=CONTROL_H
    )
    assert too_long.status_code == 422 and too_long.json()["field"] == "ttl"
    bad_name = await http.post("/api/tokens", json={"source": "../x"}, headers=CONTROL_H)
    assert bad_name.status_code == 422 and bad_name.json()["field"] == "source"


async def test_only_an_ingest_token_of_that_source_opens_its_ingest_socket(
    server: ApiServer, http: httpx.AsyncClient
) -> None:
    media = await mint(http, CONTROL_H, source="cam3")
    ingest = await mint(http, CONTROL_H, source="cam3", scope="ingest")
    base = server.url.replace("http", "ws") + "/api/sources"
    for url in (f"{base}/cam3/ingest?token={media}", f"{base}/cam4/ingest?token={ingest}"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 403
    async with websockets.connect(f"{base}/cam3/ingest?token={ingest}") as ws:
        await ws.send(make_jpeg(2))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 1}


@pytest.mark.parametrize(
    "expires",
    ["1²", "²³⁴⁵⁶⁷⁸⁹⁰", "١٢٣٤٥٦٧٨٩٠", "９９９９９９９９９９", "-1", "1e9", " 1", "1" * 13, ""],
)
async def test_an_expiry_that_is_not_ascii_digits_is_a_401(
    http: httpx.AsyncClient, expires: str
) -> None:
    token = await mint(http, CONTROL_H, source="cam1")
    parts = token.split(".")
    parts[4] = expires
    response = await http.get("/api/sources/cam1/frame", params={"token": ".".join(parts)})
    assert response.status_code == 401 and response.json()["error"] == "malformed token"


async def test_expired_and_overlong_tokens_are_refused(http: httpx.AsyncClient) -> None:
    key = KeyRing(parse_keys(f"{CONTROL}:control", "test")).keys[0]
    expired = issue(key, "media", "cam1", ttl=60, now=time.time() - 120).token
    forever = issue(key, "media", "cam1", ttl=10 * MAX_TTL).token
    gone = await http.get(f"/api/sources/cam1/frame?token={expired}")
    assert gone.status_code == 401 and "expired" in gone.json()["error"]
    long = await http.get(f"/api/sources/cam1/frame?token={forever}")
    assert long.status_code == 401 and "MEDIA_TOKEN_MAX_TTL" in long.json()["error"]
    v1 = "v1.0123456789ab.view.9999999999." + "0" * 64  # the old format grants nothing
    assert (await http.get(f"/api/sources/cam1/frame?token={v1}")).status_code == 401


def test_tokens_are_bound_to_their_key_source_and_scope() -> None:
    ring = KeyRing(parse_keys(f"{VIEW}:view,{CONTROL}:control", "test"))
    key = ring.keys[0]
    fresh = issue(key, "media", "cam1", ttl=60, now=1000.0)
    grant = verify(ring, fresh.token, max_ttl=60, now=1059.0)
    assert (grant.key, grant.scope, grant.source) == (key, "media", "cam1")
    with pytest.raises(TokenError, match="expired"):
        verify(ring, fresh.token, max_ttl=60, now=1061.0)
    with pytest.raises(TokenError, match="invalid token"):  # the key was removed: revoked
        verify(KeyRing(parse_keys(f"{CONTROL}:control", "test")), fresh.token, 60, now=1001.0)
    for changed in (
        fresh.token.replace(".media.", ".ingest."),
        fresh.token.replace(".cam1.", ".cam2."),
    ):
        with pytest.raises(TokenError, match="invalid token"):
            verify(ring, changed, max_ttl=60, now=1001.0)


@pytest.mark.parametrize(
    "query",
    [
        f"key={CONTROL}",
        f"%6Bey={CONTROL}",  # an encoded name
        f"key%3D{CONTROL}",  # an encoded separator
        f"%256Bey={CONTROL}",  # encoded twice
        f"limit=1&KEY={CONTROL}",
        f"token={CONTROL}",
        f"%74oken={CONTROL}",
    ],
)
async def test_keys_in_urls_are_refused_and_never_logged(
    server: ApiServer, http: httpx.AsyncClient, query: str
) -> None:
    response = await http.get(f"/api/sources?{query}")
    assert response.status_code == 401
    # Access lines are written in order: once a later request's line is there, so is this one.
    probe = f"probe-{uuid.uuid4().hex}"
    await http.get(f"/health?{probe}")
    await wait_until(lambda: _logged(server, probe), timeout=5)
    log = server.proc.log()
    assert CONTROL not in log and "/api/sources?" in log


async def _logged(server: ApiServer, text: str) -> bool:
    return text in server.proc.log()


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("GET /a?%6Bey=SECRET HTTP/1.1", "GET /a?key=*** HTTP/1.1"),
        ("/a?key%3DSECRET", "/a?key=***"),
        ("/a?limit=5&token=SECRET&x=1", "/a?limit=5&token=***&x=1"),
        ("/a?%0Akey=SECRET", "/a??key=***"),  # no line break forged into the log
        ("/a?api_key=SECRET;b=2", "/a?api_key=***;b=2"),
        ("/a?limit=5", "/a?limit=5"),
    ],
)
def test_redaction_masks_every_spelling_of_a_key_parameter(line: str, shown: str) -> None:
    assert redact(line) == shown
