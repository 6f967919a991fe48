"""The API through a real uvicorn process and a real Redis: every route, success and errors."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets
from litestar.testing import TestClient

from api.app import create_app
from api.auth import KeyRing, load_keys, parse_keys
from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import AudioChunk, InstructionChanged, TextChunk, decode_message
from shared.settings import Settings, SettingsError
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import (
    ApiServer,
    SseReader,
    add_frame,
    add_history,
    make_jpeg,
    say,
    subscribed,
    wait_until,
)

VIEW = "view-secret-1"
CONTROL = "control-secret-2"
VIEW_H = {"Authorization": f"Bearer {VIEW}"}
CONTROL_H = {"Authorization": f"Bearer {CONTROL}"}


@dataclass
class Api:
    url: str
    keys: Keys
    settings: Settings
    redis: aioredis.Redis
    server: ApiServer

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def source(self, name: str = "cam1") -> str:
        await SourceRegistry(self.redis, self.keys, "describe").register(name, "clip.mp4")
        return name


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": f"api{os.getpid()}",
        "API_KEYS": f"{VIEW}:view,{CONTROL}:control",
        "INSTRUCTION_MAX_CHARS": "50",
        "SSE_KEEPALIVE": "1",
        "SSE_REPLAY": "3",
        "ASK_QUEUE_MAX": "1",
        "LOG_LEVEL": "INFO",
    }
    api = ApiServer(env)
    yield api, env
    api.stop()


@pytest.fixture
async def api(server: tuple[ApiServer, dict[str, str]], redis_url: str) -> AsyncIterator[Api]:
    proc, env = server
    settings = load_settings(env, env_file=None)
    client = aioredis.Redis.from_url(redis_url)
    yield Api(proc.url, Keys(settings.key_prefix), settings, client, proc)
    await client.aclose()


async def test_health_is_open_and_keys_are_checked(api: Api) -> None:
    async with api.client() as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok", "redis": True}
        missing = await http.get("/api/sources")
        assert missing.status_code == 401 and "API key required" in missing.json()["error"]
        wrong = await http.get("/api/sources", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {
            "error": "invalid API key",
            "status": 401,
        }
        assert (await http.get("/api/sources", headers=VIEW_H)).status_code == 200
        in_url = await http.get(f"/api/sources?key={VIEW}")  # keys never go in URLs
        assert in_url.status_code == 401 and "not accepted in URLs" in in_url.json()["error"]
        name = await api.source()
        forbidden = await http.put(
            f"/api/sources/{name}/instruction", json={"instruction": "x"}, headers=VIEW_H
        )
        assert (
            forbidden.status_code == 403 and "may view but not control" in forbidden.json()["error"]
        )
        config = (await http.get("/api/config")).json()
        assert config["auth_required"] is True and config["stream_delay_init"] == 5.0
    usage = await api.redis.hgetall(api.keys.key_usage)  # type: ignore[misc]
    view_fp = hashlib.sha256(VIEW.encode()).hexdigest()[:12].encode()
    assert int(usage[view_fp]) >= 2
    assert all(VIEW.encode() not in k for k in usage)
    log = api.server.proc.log()
    assert "GET /api/sources?key=*** " in log and VIEW not in log and CONTROL not in log


async def test_instruction_is_stored_and_published_to_the_worker(api: Api) -> None:
    name = await api.source()
    pubsub = api.redis.pubsub()
    await pubsub.subscribe(api.keys.control_channel(name))
    async with api.client() as http:
        resp = await http.put(
            f"/api/sources/{name}/instruction",
            json={"instruction": " count cars "},
            headers=CONTROL_H,
        )
        assert resp.status_code == 200
        assert resp.json() == {"source": name, "instruction": "count cars", "rev": 1}
        got = await wait_until(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        )
        assert decode_message(got["data"]) == InstructionChanged(
            source=name, instruction="count cars", rev=1, ts=decode_message(got["data"]).ts
        )
        state = await api.redis.hgetall(api.keys.source_state(name))  # type: ignore[misc]
        assert state[b"instruction"] == b"count cars" and state[b"instruction_rev"] == b"1"
        listed = (await http.get("/api/sources", headers=VIEW_H)).json()["sources"]
        assert [(s["name"], s["instruction"]) for s in listed] == [(name, "count cars")]
        one = await http.get(f"/api/sources/{name}", headers=VIEW_H)
        assert one.json()["instruction_rev"] == 1
    await pubsub.aclose()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"instruction": "ok", "colour": "red"}, 422, "colour", "unknown field"),
        ({}, 422, "instruction", "missing required field"),
        ({"instruction": 5}, 422, "instruction", "Expected `str`"),
        ({"instruction": "   "}, 422, "instruction", "must not be empty"),
        ({"instruction": "x" * 51}, 422, "instruction", "51 characters, at most 50"),
        ({"instruction": "x" * 70_000}, 413, None, ""),
    ],
)
async def test_bad_instruction_bodies_are_rejected_naming_the_field(
    api: Api, body: dict[str, object], status: int, field: str | None, message: str
) -> None:
    name = await api.source()
    async with api.client() as http:
        resp = await http.put(f"/api/sources/{name}/instruction", json=body, headers=CONTROL_H)
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert payload["status"] == status
    assert payload.get("field") == field and message in payload["error"]
    state = await api.redis.hgetall(api.keys.source_state(name))  # type: ignore[misc]
    assert state[b"instruction_rev"] == b"0"  # nothing changed


@pytest.mark.parametrize(
    "path",
    ["", "/history", "/events", "/mjpeg", "/frame", "/audio"],
)
async def test_unknown_source_is_a_json_404(api: Api, path: str) -> None:
    async with api.client() as http:
        resp = await http.get(f"/api/sources/nosuch{path}", headers=VIEW_H)
        bad_name = await http.get(f"/api/sources/..%2Fetc{path}", headers=VIEW_H)
    assert resp.status_code == 404 and resp.json() == {
        "error": "unknown source 'nosuch'",
        "status": 404,
    }
    assert bad_name.status_code == 404


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    async with api.client() as http:
        route = await http.get("/api/nothing", headers=VIEW_H)
        method = await http.patch("/api/sources", headers=VIEW_H)
    assert route.status_code == 404 and route.json()["status"] == 404
    assert method.status_code == 405 and method.json()["status"] == 405


async def test_history_pages_back_and_validates_its_parameters(api: Api) -> None:
    name = await api.source()
    ids = [await add_history(api.redis, api.keys, name, f"text {i}") for i in range(5)]
    async with api.client() as http:
        page = (await http.get(f"/api/sources/{name}/history?limit=2", headers=VIEW_H)).json()
        assert [i["text"] for i in page["items"]] == ["text 4", "text 3"]
        older = await http.get(
            f"/api/sources/{name}/history", params={"before": ids[3]}, headers=VIEW_H
        )
        assert [i["id"] for i in older.json()["items"]] == ids[2::-1]
        bad_limit = await http.get(f"/api/sources/{name}/history?limit=5000", headers=VIEW_H)
        assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"
        bad_before = await http.get(f"/api/sources/{name}/history?before=x", headers=VIEW_H)
        assert bad_before.status_code == 422 and bad_before.json()["field"] == "before"


async def test_sse_replays_streams_live_and_resumes_with_last_event_id(api: Api) -> None:
    name = await api.source()
    old = [await add_history(api.redis, api.keys, name, f"old {i}") for i in range(5)]
    url = f"/api/sources/{name}/events"
    async with api.client() as http, http.stream("GET", url, headers=VIEW_H) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-accel-buffering"] == "no"
        sse = SseReader.of(resp)
        replay = await sse.ready()  # SSE_REPLAY=3: the newest three
        assert [(e.event, e.id, e.data["text"]) for e in replay] == [
            ("commentary", old[i], f"old {i}") for i in (2, 3, 4)
        ]
        assert sse.retry == api.settings.sse_retry_ms
        new_id = await say(api.redis, api.keys, name, "c9", ["A red ", "car ", "stops."])
        chunks = [await sse.until("chunk") for _ in range(3)]
        assert "".join(c.data["text"] for c in chunks) == "A red car stops."
        assert all(c.id is None for c in chunks)
        finished = await sse.until("cycle")
        assert finished.data["event"] == "finished" and finished.id == new_id
        await asyncio.sleep(1.3)
        # SSE_KEEPALIVE=1: an idle stream still sends comments.
        await say(api.redis, api.keys, name, "c10", ["more"])
        await sse.until("cycle")
        assert ": keep-alive" in sse.comments
    # A browser reconnecting with the last id it saw gets exactly what came after.
    newer = await add_history(api.redis, api.keys, name, "while away")
    headers = {**VIEW_H, "Last-Event-ID": old[3]}
    async with api.client() as http, http.stream("GET", url, headers=headers) as resp:
        sse = SseReader.of(resp)
        resumed = [await sse.next() for _ in range(4)]
    assert [e.data["text"] for e in resumed] == ["old 4", "A red car stops.", "more", "while away"]
    assert resumed[-1].id == newer
    async with api.client() as http:
        bad = await http.get(url, headers={**VIEW_H, "Last-Event-ID": "yesterday"})
        # Shaped like an id but past 64 bits: Redis would refuse it (a 500), so the API does.
        huge = await http.get(url, headers={**VIEW_H, "Last-Event-ID": "9" * 20 + "-0"})
    assert bad.status_code == 422 and bad.json()["field"] == "Last-Event-ID"
    assert huge.status_code == 422 and huge.json()["field"] == "Last-Event-ID"


async def test_frame_and_mjpeg_deliver_real_jpegs(api: Api) -> None:
    name = await api.source()
    async with api.client() as http:
        none_yet = await http.get(f"/api/sources/{name}/frame", headers=VIEW_H)
        assert none_yet.status_code == 503 and none_yet.headers["retry-after"] == "1"
        jpegs = [make_jpeg(i) for i in range(3)]
        await add_frame(api.redis, api.keys, name, 1, jpegs[0])
        frame = await http.get(f"/api/sources/{name}/frame", headers=VIEW_H)
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        assert frame.content == jpegs[0] and frame.headers["x-frame-seq"] == "1"
        async with http.stream("GET", f"/api/sources/{name}/mjpeg", headers=VIEW_H) as resp:
            assert resp.headers["content-type"].startswith("multipart/x-mixed-replace; boundary=")
            boundary = resp.headers["content-type"].split("boundary=")[1].encode()
            body = b""
            stream = resp.aiter_bytes()
            async with asyncio.timeout(10):
                body += await anext(stream)
                for seq, jpeg in enumerate(jpegs[1:], start=2):
                    # Each frame once the previous one arrived: every frame is sent.
                    await add_frame(api.redis, api.keys, name, seq, jpeg)
                    while body.count(b"--" + boundary) < seq or not body.endswith(b"\r\n"):
                        body += await anext(stream)
    parts = [p for p in body.split(b"--" + boundary) if p.strip()]
    payloads = [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts[:3]]
    assert payloads == jpegs
    assert b"Content-Type: image/jpeg" in parts[0]


async def test_audio_is_a_raw_pcm_stream_with_its_format_in_headers(api: Api) -> None:
    name = await api.source()
    pub = SourcePublisher(api.redis, api.keys, name)
    pcm = [bytes([i]) * 960 for i in range(1, 4)]
    async with api.client() as http:
        # Speech off (no worker says tts, ENABLE_TTS unset): a clear 409, not a silent 200.
        off = await http.get(f"/api/sources/{name}/audio", headers=VIEW_H)
        assert off.status_code == 409 and "ENABLE_TTS=true" in off.json()["error"]
        bad = await http.get(f"/api/sources/{name}/audio?format=mp3", headers=VIEW_H)
        assert bad.status_code in (400, 422)
        await api.redis.set(api.keys.lease(name), "w1")
        await api.redis.hset(api.keys.worker_status("w1"), mapping={"tts": "on"})  # type: ignore[misc]
        async with http.stream("GET", f"/api/sources/{name}/audio", headers=VIEW_H) as resp:
            assert resp.status_code == 200
            assert resp.headers["x-audio-format"] == "s16le"
            assert resp.headers["x-audio-sample-rate"] == "48000"
            assert resp.headers["x-audio-channels"] == "1"
            assert resp.headers["content-type"].startswith("audio/pcm")
            await subscribed(api.redis, api.keys.audio_channel(name))
            for seq, data in enumerate(pcm):
                await pub.audio(AudioChunk(source=name, cycle="c", seq=seq, pcm=data))
            # Text and other rates never reach the PCM stream.
            await pub.text(TextChunk(source=name, cycle="c", seq=9, text="not audio"))
            await pub.audio(
                AudioChunk(source=name, cycle="c", seq=9, pcm=b"\x09" * 8, sample_rate=16000)
            )
            got = b""
            async with asyncio.timeout(5):
                async for part in resp.aiter_bytes():
                    got += part
                    if len(got) >= sum(map(len, pcm)):
                        break
    assert got == b"".join(pcm)


async def test_status_reports_producer_worker_speech_and_viewers(api: Api) -> None:
    name = await api.source()
    await api.redis.hset(api.keys.producer_status(name), mapping={"state": "live", "fps": "9.8"})  # type: ignore[misc]
    await api.redis.set(api.keys.lease(name), "w1")
    await api.redis.hset(
        api.keys.worker_status("w1"), mapping={"engine": "cpu", "tts": "true", "pid": "7"}
    )  # type: ignore[misc]
    await api.redis.hset(api.keys.worker_stats(name), mapping={"cycles": "4"})  # type: ignore[misc]
    await add_history(api.redis, api.keys, name, "said")
    async with api.client() as http:
        async with http.stream("GET", f"/api/sources/{name}/events", headers=VIEW_H) as resp:
            sse = SseReader.of(resp)  # held: dropping the reader would close the stream
            await sse.next()
            status = (await http.get("/api/status", headers=VIEW_H)).json()
    src = status["sources"][0]
    assert src["producer"]["state"] == "live" and src["producer"]["fps"] == 9.8
    assert src["worker"] == "w1" and src["worker_status"]["engine"] == "cpu"
    assert src["worker_status"]["pid"] == 7 and src["worker_status"]["extra"] == {"tts": "true"}
    assert src["tts"] is True and src["stats"]["cycles"] == 4 and src["stats"]["failed"] == 0
    assert src["last_commentary_at"] > 1e9 and src["viewers"] == 1
    assert status["workers"]["w1"]["engine"] == "cpu"


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_counters_move(api: Api) -> None:
    name = await api.source()
    async with api.client() as http:
        before = (await http.get("/metrics", headers=VIEW_H)).text
        async with http.stream("GET", f"/api/sources/{name}/events", headers=VIEW_H) as resp:
            sse = SseReader.of(resp)
            await sse.ready()
            await say(api.redis, api.keys, name, "m1", ["one ", "two"])
            await sse.until("cycle")
            await sse.until("cycle")
            during = (await http.get("/metrics", headers=VIEW_H)).text
        after = (await http.get("/metrics", headers=VIEW_H)).text
    assert (
        _metric(during, "lookout_api_messages_relayed_total")
        >= _metric(before, "lookout_api_messages_relayed_total") + 4
    )
    assert _metric(during, 'lookout_api_viewers{kind="sse"}') >= 1
    assert 'route="/api/sources/{name}/events"' in after
    assert 'lookout_api_gc_seconds_count{generation="2"}' in after  # GC passes are timed
    assert _metric(after, "lookout_api_request_seconds_count") > _metric(
        before, "lookout_api_request_seconds_count"
    )


async def test_add_and_remove_sources(api: Api) -> None:
    async with api.client() as http:
        added = await http.post(
            "/api/sources", json={"name": "street", "url": "rtsp://cam.local/s"}, headers=CONTROL_H
        )
        assert added.status_code == 202 and added.json()["name"] == "street"
        assert added.json()["job_id"]
        again = await http.post(
            "/api/sources", json={"name": "street", "url": "rtsp://cam.local/s"}, headers=CONTROL_H
        )
        assert again.status_code == 409 and "street" in again.json()["error"]
        for body, field in [
            ({"name": "bad name", "url": "rtsp://x/y"}, "name"),
            ({"name": "ok", "url": "gopher://x"}, "url"),
            ({"name": "ok", "url": "rtsp://x/y", "options": {"fps": 500}}, "options"),
            ({"name": "ok", "url": "rtsp://x/y", "speed": 2}, "speed"),
        ]:
            resp = await http.post("/api/sources", json=body, headers=CONTROL_H)
            assert resp.status_code == 422 and resp.json()["field"] == field, resp.text
        viewer = await http.post("/api/sources", json={"name": "v", "url": "x"}, headers=VIEW_H)
        assert viewer.status_code == 403
        removed = await http.delete("/api/sources/street", headers=CONTROL_H)
        assert removed.status_code == 204
        gone = await http.delete("/api/sources/street", headers=CONTROL_H)
        assert gone.status_code == 404


async def test_ask_queues_a_job_and_a_full_queue_answers_429(api: Api) -> None:
    name = await api.source()
    async with api.client() as http:
        ask = await http.post(
            f"/api/sources/{name}/ask", json={"question": "What is red?"}, headers=CONTROL_H
        )
        assert ask.status_code == 202, ask.text
        job_id = ask.json()["job_id"]
        assert ask.json()["link"] == f"/api/jobs/{job_id}"
        job = await http.get(ask.json()["link"], headers=VIEW_H)
        assert job.status_code == 200 and job.json()["status"] == "queued"
        assert job.json()["question"] == "What is red?"
        full = await http.post(
            f"/api/sources/{name}/ask", json={"question": "And blue?"}, headers=CONTROL_H
        )
        assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
        missing = await http.get("/api/jobs/nosuchjob", headers=VIEW_H)
        assert missing.status_code == 404
        empty = await http.post(
            f"/api/sources/{name}/ask", json={"question": ""}, headers=CONTROL_H
        )
        assert empty.status_code == 422 and empty.json()["field"] == "question"


async def test_ingest_websocket_publishes_jpegs_and_survives_bad_ones(api: Api) -> None:
    ws_url = api.url.replace("http", "ws") + "/api/sources/webcam/ingest"
    async with websockets.connect(ws_url, additional_headers=CONTROL_H) as ws:
        await ws.send(make_jpeg(1))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 1}
        await ws.send(b"\xff\xd8\xff" + b"\x00" * 100)  # truncated
        assert "truncated JPEG" in msgspec.json.decode(await ws.recv())["error"]
        await ws.send(b"x" * (api.settings.max_frame_bytes + 1))
        assert "exceeds" in msgspec.json.decode(await ws.recv())["error"]
        await ws.send("text")
        assert "binary JPEG" in msgspec.json.decode(await ws.recv())["error"]
        await ws.send(make_jpeg(2))
        assert msgspec.json.decode(await ws.recv()) == {"seq": 2}
    assert await api.redis.xlen(api.keys.frames("webcam")) == 2
    assert await api.redis.sismember(api.keys.sources, "webcam")  # type: ignore[misc]
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url, additional_headers=VIEW_H):
            pass


async def test_openapi_documents_every_route(api: Api) -> None:
    async with api.client() as http:
        schema = (await http.get("/schema/openapi.json")).json()
        page = await http.get("/")
    operations = {
        op["operationId"]
        for path in schema["paths"].values()
        for op in path.values()
        if "operationId" in op
    }
    assert {
        "listSources",
        "addSource",
        "getSource",
        "removeSource",
        "setInstruction",
        "getHistory",
        "streamEvents",
        "streamMjpeg",
        "getFrame",
        "streamAudio",
        "askQuestion",
        "getJob",
        "getStatus",
        "getMetrics",
        "getHealth",
        "getConfig",
        "createToken",
    } <= operations
    assert "examples" in str(schema["components"]["schemas"]["InstructionIn"])
    assert page.status_code == 200 and '<canvas id="video"' in page.text


def test_keys_come_from_settings_and_file_and_bad_entries_do_not_echo_the_key(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# viewers\nfile-key:view\n\nops-key:control  # on call\n")
    settings = load_settings(
        {"API_KEYS": "env-key:control", "API_KEYS_FILE": str(key_file)}, env_file=None
    )
    ring = KeyRing(load_keys(settings))
    assert [(k.key, k.scope) for k in ring.keys] == [
        ("env-key", "control"),
        ("file-key", "view"),
        ("ops-key", "control"),
    ]
    assert ring.match("file-key") is not None and ring.match("file-ke") is None
    with pytest.raises(SettingsError) as info:
        parse_keys("sup3rsecret:admin", "API_KEYS")
    assert "sup3rsecret" not in str(info.value) and "KEY:view or KEY:control" in str(info.value)
    missing = load_settings({"API_KEYS_FILE": str(tmp_path / "nope")}, env_file=None)
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        load_keys(missing)


def test_cors_origins_are_configurable() -> None:
    settings = load_settings({"CORS_ORIGINS": "https://ops.example"}, env_file=None)
    with TestClient(create_app(settings)) as client:
        allowed = client.options(
            "/api/sources",
            headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
        )
        other = client.options(
            "/api/sources",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example"
    assert "access-control-allow-origin" not in other.headers
