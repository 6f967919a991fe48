"""The rules and alerts routes through a real API process: scopes, the CPU engine's 422, edits
and mutes, alert listing and snapshots (with media tokens), and bodies that try to abuse them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.alerts import alert_id, record_alert, snapshot_path
from shared.keys import Keys
from shared.messages import AlertEvent
from shared.rules import MAX_RULES_PER_SOURCE
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer, make_jpeg

VIEW, CONTROL = "rules-view-1", "rules-control-2"
VIEW_H = {"Authorization": f"Bearer {VIEW}"}
CONTROL_H = {"Authorization": f"Bearer {CONTROL}"}
PERSON = {"name": "Door", "condition": "a person is visible"}


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[tuple[ApiServer, Keys]]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": f"rules{os.getpid()}",
        "API_KEYS": f"{VIEW}:view,{CONTROL}:control",
        "ENGINE": "cpu",
    }
    api = ApiServer(env, "api-rules")
    yield api, Keys(load_settings(env, env_file=None).key_prefix)
    api.stop()


@pytest.fixture
async def http(
    server: tuple[ApiServer, Keys], redis_client: aioredis.Redis
) -> AsyncIterator[httpx.AsyncClient]:
    api, keys = server
    await SourceRegistry(redis_client, keys, "describe").register("cam", "clip.mp4")
    await SourceRegistry(redis_client, keys, "describe").register("other", "clip.mp4")
    async with httpx.AsyncClient(base_url=api.url, headers=CONTROL_H, timeout=10) as client:
        yield client


def rules_of(source: str = "cam") -> str:
    return f"/api/sources/{source}/rules"


async def test_view_reads_control_changes(http: httpx.AsyncClient) -> None:
    made = await http.post(rules_of(), json=PERSON)
    assert made.status_code == 201, made.text
    rule = made.json()
    assert rule["fire_after"] == 1 and rule["clear_after"] == 2 and not rule["active"]
    listed = await http.get(rules_of(), headers=VIEW_H)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["rules"]] == [rule["id"]]
    assert listed.json()["engines"] == ["cpu"] and "people" in listed.json()["decides"]
    assert (await http.post(rules_of(), json=PERSON, headers=VIEW_H)).status_code == 403
    gone = await http.delete(f"{rules_of()}/{rule['id']}", headers=VIEW_H)
    assert gone.status_code == 403
    async with httpx.AsyncClient(base_url=str(http.base_url)) as bare:
        assert (await bare.get(rules_of())).status_code == 401
    assert (await http.get(rules_of("nosuch"))).status_code == 404
    assert (await http.delete(f"{rules_of()}/{rule['id']}")).status_code == 204
    assert (await http.delete(f"{rules_of()}/{rule['id']}")).status_code == 404


async def test_the_cpu_engine_refuses_what_it_cannot_see_until_a_model_worker_serves(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, server: tuple[ApiServer, Keys]
) -> None:
    pot = {"name": "Pot", "condition": "the pot boils over"}
    refused = await http.post(rules_of(), json=pot)
    assert refused.status_code == 422
    assert (
        "'the pot boils over'" in refused.json()["error"]
        and "a face is visible" in refused.json()["error"]
    )
    # A live worker with a model engine and none with the CPU engine: any yes/no question.
    keys = server[1]
    beat = WorkerBeat(worker="gpu1", engine="minicpmo", beat_ts=1.0)
    await redis_client.hset(keys.worker_status("gpu1"), mapping=beat.to_fields())  # type: ignore[misc]
    try:
        accepted = await http.post(rules_of(), json=pot)
        assert accepted.status_code == 201, accepted.text
        listed = (await http.get(rules_of())).json()
        assert listed["engines"] == ["minicpmo"] and "model" in listed["decides"]
    finally:
        await redis_client.delete(keys.worker_status("gpu1"))


async def test_edit_mute_and_the_webhook_kept_behind_its_redaction(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, server: tuple[ApiServer, Keys]
) -> None:
    secret_url = "https://user:pw@hooks.example.com/in?token=abc"
    rule = (await http.post(rules_of(), json={**PERSON, "webhook": secret_url})).json()
    assert rule["webhook"] == "https://hooks.example.com/in?…"  # no password, no query
    keys = server[1]
    await redis_client.hset(keys.rule_states("cam"), rule["id"], '{"active": true, "yes_run": 3}')  # type: ignore[misc]
    muted = await http.put(
        f"{rules_of()}/{rule['id']}", json={**PERSON, "webhook": rule["webhook"], "muted": True}
    )
    assert muted.status_code == 200 and muted.json()["muted"] and not muted.json()["active"]
    stored = await redis_client.hget(keys.rules("cam"), rule["id"])  # type: ignore[misc]
    assert secret_url.encode() in stored  # the page sent back the redacted form: kept
    assert not await redis_client.hexists(keys.rule_states("cam"), rule["id"])  # type: ignore[misc]
    missing = await http.put(f"{rules_of()}/abcdef12", json=PERSON)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({**PERSON, "webhook": "http://169.254.169.254/latest/meta-data"}, 422, "metadata"),
        ({**PERSON, "webhook": "http://0x7f000001:8199/api"}, 422, "loopback"),
        ({**PERSON, "webhook": "http://[::ffff:127.0.0.1]/"}, 422, "loopback"),
        ({**PERSON, "webhook": "file:///etc/passwd"}, 422, "scheme"),
        ({**PERSON, "webhook": "gopher://x/"}, 422, "scheme"),
        ({**PERSON, "name": "   "}, 422, "must not be empty"),
        ({**PERSON, "condition": "x" * 201}, 422, "condition"),
        ({**PERSON, "fire_after": 0}, 422, "fire_after"),
        ({**PERSON, "cooldown_s": -1}, 422, "cooldown_s"),
        ({**PERSON, "admin": True}, 422, "admin"),
        ({"name": "x"}, 422, "condition"),
    ],
)
async def test_bodies_that_abuse_the_route_are_refused(
    http: httpx.AsyncClient, body: dict[str, object], status: int, words: str
) -> None:
    resp = await http.post(rules_of(), json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.text
    assert (await http.get(rules_of())).json()["rules"] == []  # nothing was stored


async def test_rule_ids_and_counts_are_bounded(http: httpx.AsyncClient) -> None:
    assert (await http.delete(f"{rules_of()}/..%2F..%2Fstate")).status_code in (404, 422)
    assert (await http.delete(f"{rules_of()}/{'a' * 17}")).status_code == 422
    assert (await http.put(f"{rules_of()}/UPPER", json=PERSON)).status_code == 422
    for n in range(MAX_RULES_PER_SOURCE):
        assert (await http.post(rules_of(), json={**PERSON, "name": f"r{n}"})).status_code == 201
    full = await http.post(rules_of(), json=PERSON)
    assert full.status_code == 422 and f"at most {MAX_RULES_PER_SOURCE}" in full.text


async def test_alerts_are_listed_per_source_with_their_snapshot(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, server: tuple[ApiServer, Keys]
) -> None:
    keys = server[1]
    jpeg = make_jpeg(3)
    for n, (source, state) in enumerate([("cam", "fired"), ("other", "fired"), ("cam", "cleared")]):
        ident = alert_id("r1", f"w-x-{n}")
        event = AlertEvent(
            source=source, alert_id=ident, state=state, rule_id="r1", rule="Door",  # type: ignore[arg-type]
            condition="a person is visible", cycle=f"w-x-{n}", text=f"text {n}",
            snapshot=snapshot_path(source, ident),
        )  # fmt: skip
        await record_alert(redis_client, keys, event, jpeg, maxlen=100, snapshot_ttl=60)
    listed = (await http.get("/api/sources/cam/alerts", headers=VIEW_H)).json()["alerts"]
    assert [(a["state"], a["text"]) for a in listed] == [("cleared", "text 2"), ("fired", "text 0")]
    snap = await http.get(listed[0]["snapshot"], headers=VIEW_H)
    assert snap.status_code == 200 and snap.content == jpeg
    assert snap.headers["content-type"] == "image/jpeg"
    # <img> carries a media token of its source, never a key.
    token = (await http.post("/api/tokens", json={"source": "cam"}, headers=VIEW_H)).json()["token"]
    async with httpx.AsyncClient(base_url=str(http.base_url)) as bare:
        assert (await bare.get(f"{listed[0]['snapshot']}?token={token}")).status_code == 200
        other = snapshot_path("other", alert_id("r1", "w-x-1"))
        assert (await bare.get(f"{other}?token={token}")).status_code == 403
        assert (await bare.get(listed[0]["snapshot"])).status_code == 401
    assert (await http.get(snapshot_path("cam", "nosuch"))).status_code == 404
    assert (await http.get("/api/sources/cam/alerts/%20x/snapshot.jpg")).status_code == 422
    assert (await http.get("/api/sources/cam/alerts?limit=0")).status_code == 422


async def test_removing_the_source_removes_its_rules(
    http: httpx.AsyncClient, redis_client: aioredis.Redis, server: tuple[ApiServer, Keys]
) -> None:
    assert (await http.post(rules_of(), json=PERSON)).status_code == 201
    assert (await http.delete("/api/sources/cam")).status_code == 204
    assert not await redis_client.exists(server[1].rules("cam"), server[1].rule_states("cam"))
    assert (await http.get(rules_of())).status_code == 404
