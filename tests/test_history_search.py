"""History search (`q`, `since`, `until`) and snapshots through a real `lookout api` process
and a real Redis: matches, paging, keys and tokens, and abuse of every new parameter."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from api.history_search import SCAN_MAX
from shared.keys import Keys
from shared.records import CommentaryRecord
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer, make_jpeg
from worker.snapshots import HistoryWriter

VIEW = "view-secret-h"
VIEW_H = {"Authorization": f"Bearer {VIEW}"}
T0 = 1_800_000_000  # epoch seconds of the first seeded entry (2027-01-15T08:00:00Z)


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[tuple[ApiServer, Keys]]:
    prefix = f"hist{os.getpid()}"
    env = {"REDIS_URL": redis_server.url, "KEY_PREFIX": prefix, "API_KEYS": f"{VIEW}:view"}
    api = ApiServer(env, "api-history")
    yield api, Keys(prefix)
    api.stop()


@pytest.fixture
async def http(server: tuple[ApiServer, Keys]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[0].url, headers=VIEW_H, timeout=20) as client:
        yield client


@pytest.fixture
async def seeded(redis_url: str, server: tuple[ApiServer, Keys]) -> AsyncIterator[list[str]]:
    """Source `cam` with six commentaries, one a minute from T0, at known ids."""
    keys = server[1]
    redis = aioredis.Redis.from_url(redis_url)
    await SourceRegistry(redis, keys, "describe").register("cam", "clip.mp4")
    texts = [
        "A red car turns left.",
        "Two people walk past the Red door.",
        "Nothing is moving.",
        "A dog runs; 50% of the picture is grass (really).",
        "The café sign lights up.",
        "A RED bicycle leans on the wall.",
    ]
    ids = []
    for n, text in enumerate(texts):
        record = CommentaryRecord(cycle=f"c{n}", status="finished", text=text, instruction="")
        fields = record.to_fields()
        ids.append(await redis.xadd(keys.history("cam"), fields, f"{(T0 + 60 * n) * 1000}-0"))  # type: ignore[arg-type]
    await redis.xadd(keys.history("cam"), {"cycle": "bad"}, f"{(T0 + 400) * 1000}-0")
    yield [i.decode() for i in ids]
    await redis.aclose()


async def search(http: httpx.AsyncClient, **params: object) -> dict[str, object]:
    response = await http.get("/api/sources/cam/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def texts(body: dict[str, object]) -> list[str]:
    return [item["text"] for item in body["items"]]  # type: ignore[attr-defined]


async def test_search_finds_every_word_within_time_bounds(
    http: httpx.AsyncClient, seeded: list[str]
) -> None:
    assert texts(await search(http, q="red")) == [
        "A RED bicycle leans on the wall.",
        "Two people walk past the Red door.",
        "A red car turns left.",
    ]
    assert texts(await search(http, q="red  people")) == ["Two people walk past the Red door."]
    assert texts(await search(http, q="50% (really)")) == [
        "A dog runs; 50% of the picture is grass (really)."
    ]  # Lua pattern characters are plain text
    assert texts(await search(http, q="café")) == ["The café sign lights up."]
    assert texts(await search(http, q="unicorn")) == []
    assert texts(await search(http, q="red\x00 ' \" -- %s")) == []  # plain bytes, no match
    # Time bounds: epoch seconds and ISO 8601, both inclusive.
    assert texts(await search(http, q="red", since=T0 + 60, until=T0 + 300)) == [
        "A RED bicycle leans on the wall.",
        "Two people walk past the Red door.",
    ]
    assert texts(await search(http, since="2027-01-15T08:02:00Z", until=T0 + 180)) == [
        "A dog runs; 50% of the picture is grass (really).",
        "Nothing is moving.",
    ]
    # Paging: a full page names where the next starts.
    first = await search(http, q="red", limit=2)
    assert len(texts(first)) == 2 and first["next_before"] == seeded[1]
    rest = await search(http, q="red", limit=2, before=first["next_before"])
    assert texts(rest) == ["A red car turns left."] and rest["next_before"] is None
    plain = await search(http, limit=3)  # the newest entry is malformed: left out, counted
    assert plain["next_before"] == seeded[4] and len(texts(plain)) == 2


async def test_a_search_scans_a_bounded_number_of_entries_and_says_where_to_go_on(
    http: httpx.AsyncClient, redis_url: str, server: tuple[ApiServer, Keys]
) -> None:
    keys = server[1]
    redis = aioredis.Redis.from_url(redis_url)
    await SourceRegistry(redis, keys, "describe").register("big", "clip.mp4")
    filler = CommentaryRecord(cycle="f", status="finished", text="Nothing new.", instruction="")
    needle = CommentaryRecord(cycle="n", status="finished", text="A fox!", instruction="")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(keys.history("big"), needle.to_fields())  # type: ignore[arg-type]
        for _ in range(SCAN_MAX + 50):
            pipe.xadd(keys.history("big"), filler.to_fields())  # type: ignore[arg-type]
        await pipe.execute()
    await redis.aclose()
    first = (await http.get("/api/sources/big/history", params={"q": "fox"})).json()
    assert first["items"] == [] and first["next_before"]  # stopped after SCAN_MAX entries
    rest = (
        await http.get(
            "/api/sources/big/history", params={"q": "fox", "before": first["next_before"]}
        )
    ).json()
    assert texts(rest) == ["A fox!"] and rest["next_before"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": " ".join("abcdefghi")}, "q"),
        ({"since": "nan"}, "since"),
        ({"since": "inf"}, "since"),
        ({"since": "-5"}, "since"),
        ({"since": "1e309"}, "since"),
        ({"since": "99999999999999"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "9" * 5000}, "since"),
        ({"until": "2026-11-27T09:00:00+25:00"}, "until"),
        ({"until": "2026-13-01T00:00:00"}, "until"),
        ({"since": "2000", "until": "1000"}, "since"),
        ({"before": "1-2-3"}, "before"),
        ({"before": "99999999999999999999-0"}, "before"),  # past 64 bits: Redis would refuse
        ({"before": "1700000000000-0\x00"}, "before"),
    ],
)
async def test_bad_search_parameters_are_422_naming_the_field(
    http: httpx.AsyncClient, seeded: list[str], params: dict[str, str], field: str
) -> None:
    response = await http.get("/api/sources/cam/history", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_snapshots_are_served_while_their_entry_lives_with_keys_or_tokens(
    http: httpx.AsyncClient, redis_url: str, server: tuple[ApiServer, Keys]
) -> None:
    keys = server[1]
    redis = aioredis.Redis.from_url(redis_url)
    await SourceRegistry(redis, keys, "describe").register("snap", "clip.mp4")
    writer = HistoryWriter(redis, keys, maxlen=10)
    record = CommentaryRecord(cycle="c", status="finished", text="t", instruction="", snapshot=True)
    jpegs = [make_jpeg(n) for n in range(150)]
    ids = [await writer.append("snap", record, jpeg) for jpeg in jpegs]
    oldest = (await redis.xrange(keys.history("snap"), count=1))[0][0].decode()
    await redis.aclose()
    newest = await http.get(f"/api/sources/snap/history/{ids[-1]}/snapshot.jpg")
    assert newest.status_code == 200 and newest.content == jpegs[-1]
    assert newest.headers["content-type"] == "image/jpeg"
    trimmed = ids[ids.index(oldest) - 1]  # MAXLEN ~ trimmed the entries before `oldest`
    gone = await http.get(f"/api/sources/snap/history/{trimmed}/snapshot.jpg")
    assert gone.status_code == 404 and gone.json()["error"].startswith("no snapshot")
    for bad in ["x", "1-", "-1", "1-2-3", "99999999999999999999-0", "..%2f..%2fetc"]:
        response = await http.get(f"/api/sources/snap/history/{bad}/snapshot.jpg")
        assert response.status_code in (404, 422), (bad, response.text)
        if response.status_code == 422:
            assert response.json()["field"] == "history_id"
    assert (await http.get("/api/sources/snap/history/x/snapshot.jpg")).status_code == 422
    # Keys and media tokens, as the other reads: <img> carries a token for its one source.
    url = f"/api/sources/snap/history/{ids[-1]}/snapshot.jpg"
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as bare:
        assert (await bare.get(url)).status_code == 401
        token = (await http.post("/api/tokens", json={"source": "snap"})).json()["token"]
        assert (await bare.get(url, params={"token": token})).content == jpegs[-1]
        other = (await http.post("/api/tokens", json={"source": "cam"})).json()["token"]
        assert (await bare.get(url, params={"token": other})).status_code == 403
