"""ENGINE=openai workers end to end: real `lookout worker` and `lookout api` processes, a real
`transformers serve`, frames and results through Redis. Commentary and an ask; two workers
serving different models each take only the sources that require theirs; switching a worker's
model at runtime cuts its running cycle (recorded as interrupted) and moves its sources; a
switch to a model the server lacks rolls back and says why."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from shared.asks import ask_status, enqueue_ask
from shared.keys import Keys
from shared.messages import CycleEvent
from shared.records import CommentaryRecord
from shared.settings_env import load_settings
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.helpers import LookoutProcess
from tests.openai_server import MODEL_A, MODEL_B, OPENAI_TEST_KEY, ServeProcess
from tests.test_api_support import ApiServer
from tests.worker_support import FAST, Feeder, Recorder, background, scene, subscribed, until

# The first test to use the server waits for it to be built and started (once per session).
pytestmark = pytest.mark.timeout(300)


def worker_env(
    test_env: dict[str, str], server: ServeProcess, model: str, **more: str
) -> dict[str, str]:
    return {
        **test_env,
        **FAST,
        "CHANGE_THRESHOLD": "0",
        "ENGINE": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
        "OPENAI_MODEL": model,
        "MAX_NEW_TOKENS": "16",
        **more,
    }


@contextlib.asynccontextmanager
async def workers(*specs: tuple[str, dict[str, str]]) -> AsyncIterator[list[LookoutProcess]]:
    procs = [
        LookoutProcess(["worker", "--worker-id", wid, "--grace", "2"], env, wid)
        for wid, env in specs
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop(signal.SIGTERM)


async def beat_of(redis: aioredis.Redis, keys: Keys, worker: str) -> WorkerBeat | None:
    raw = await redis.hgetall(keys.worker_status(worker))  # type: ignore[misc]
    return WorkerBeat.from_fields(raw) if raw else None


async def test_commentary_and_an_ask_through_the_bus(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys, openai_server: ServeProcess
) -> None:
    env = worker_env(test_env, openai_server, MODEL_A)
    settings = load_settings(env, env_file=None)
    await SourceRegistry(redis_client, keys, settings.default_instruction).register("cam")
    feeder = Feeder(redis_client, keys, "cam", scene(3))
    rec = Recorder(test_env["REDIS_URL"], keys, ["cam"])
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)), workers(("wo", env)) as (proc,):
        await subscribed(rec)
        await rec.wait(lambda: len(rec.events("cam", "finished")) >= 1, within=60)
        job_id = await enqueue_ask(redis_client, settings, "cam", "What is there?")
        for _ in range(600):
            status = await ask_status(redis_client, settings, job_id)
            if status is not None and status.status in ("complete", "failed"):
                break
            await asyncio.sleep(0.05)
        for _ in range(200):  # the next heartbeat carries the speed of the finished cycles
            beat = await beat_of(redis_client, keys, "wo")
            if beat is not None and beat.tokens_per_s > 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
    finished = rec.events("cam", "finished")[0]
    assert finished.worker == "wo" and finished.text  # type: ignore[attr-defined]
    assert "".join(c.text for c in rec.chunks(finished.cycle)).strip() == finished.text.strip()  # type: ignore[attr-defined]
    entry = await redis_client.xrange(keys.history("cam"), finished.history_id, finished.history_id)  # type: ignore[attr-defined]
    record = CommentaryRecord.from_fields(entry[0][1])
    assert record.status == "finished" and record.tokens == 16  # MAX_NEW_TOKENS
    assert status is not None and status.status == "complete" and status.answer, proc.log()[-2000:]
    assert beat is not None and beat.model == MODEL_A and beat.engine == "openai"
    assert set(beat.server_models) == {MODEL_A, MODEL_B} and beat.tokens_per_s > 0
    assert OPENAI_TEST_KEY not in proc.log()


async def test_models_route_sources_and_a_worker_switches_at_runtime(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys, openai_server: ServeProcess
) -> None:
    # Long answers, so the switch lands in the middle of a cycle: the tiny model writes ~500
    # tokens/s on an idle machine (300 once ended before the switch came), 3,000 take ~6 s.
    # The same server under another name stands for a second server a switch may point at.
    other = f"http://localhost:{openai_server.port}/v1"
    servers = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_ALLOWED_BASE_URLS": other}
    env_a = worker_env(test_env, openai_server, MODEL_A, MAX_NEW_TOKENS="3000", **servers)
    env_b = worker_env(test_env, openai_server, MODEL_B, MAX_NEW_TOKENS="300", **servers)
    settings = load_settings(env_a, env_file=None)
    registry = SourceRegistry(redis_client, keys, settings.default_instruction)
    for name in ("cam-a", "cam-b"):
        await registry.register(name)
    feeders = [Feeder(redis_client, keys, n, scene(i)) for i, n in enumerate(("cam-a", "cam-b"))]
    rec = Recorder(test_env["REDIS_URL"], keys, ["cam-a", "cam-b"])
    api = ApiServer({**test_env, **servers}, "api-models")
    stop = asyncio.Event()
    try:
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=60) as http,
            background(rec.run(), *(f.run(stop) for f in feeders)),
        ):
            await subscribed(rec)
            for source, model in (("cam-a", MODEL_A), ("cam-b", MODEL_B)):
                answer = await http.put(f"/api/sources/{source}/model", json={"model": model})
                assert answer.status_code == 200, answer.text
            async with workers(("wa", env_a), ("wb", env_b)):
                await rec.wait(
                    lambda: all(rec.events(s, "first_chunk") for s in ("cam-a", "cam-b")),
                    within=60,
                )
                holders = {
                    s: e.worker for s in ("cam-a", "cam-b") for e in rec.events(s, "started")
                }
                assert holders == {"cam-a": "wa", "cam-b": "wb"}

                listed = (await http.get("/api/models")).json()
                by_model = {m["model"]: m for m in listed["models"]}
                assert by_model[MODEL_A]["workers"] == ["wa"] and by_model[MODEL_A]["sources"] == [
                    "cam-a"
                ]
                assert by_model[MODEL_B]["workers"] == ["wb"] and by_model[MODEL_B]["server_lists"]

                # Bad switches change nothing.
                refused = await http.put(
                    "/api/workers/wa/model",
                    json={"model": MODEL_B, "base_url": "http://169.254.169.254/v1"},
                )
                assert refused.status_code == 422 and "base_url" in refused.text
                assert (
                    await http.put("/api/workers/nobody/model", json={"model": MODEL_B})
                ).status_code == 404
                bad_id = await http.put("/api/workers/wa/model", json={"model": "../../etc"})
                assert bad_id.status_code == 422

                await until(
                    lambda: any(e.worker == "wa" for e in rec.events("cam-a", "first_chunk")), 30
                )
                cycle = [e for e in rec.events("cam-a", "started") if e.worker == "wa"][-1].cycle
                switched = await http.put("/api/workers/wa/model", json={"model": MODEL_B})
                assert switched.status_code == 200, switched.text
                assert switched.json()["state"] == "done" and switched.json()["previous"] == MODEL_A

                def ended() -> list[CycleEvent]:
                    return [
                        e
                        for e in rec.events("cam-a")
                        if e.cycle == cycle and e.event in ("finished", "interrupted", "failed")
                    ]

                await rec.wait(lambda: bool(ended()), within=30)
                cut = ended()
                assert cut[0].event == "interrupted", cut
                entry = await redis_client.xrange(
                    keys.history("cam-a"), cut[0].history_id, cut[0].history_id
                )  # type: ignore[attr-defined]
                assert CommentaryRecord.from_fields(entry[0][1]).status == "interrupted"

                async def note() -> str | None:
                    status = (await http.get("/api/status")).json()
                    return next(s for s in status["sources"] if s["name"] == "cam-a")["model_note"]

                for _ in range(200):
                    if await note() == f"no live worker serves {MODEL_A}":
                        break
                    await asyncio.sleep(0.05)
                assert await note() == f"no live worker serves {MODEL_A}"
                assert (await redis_client.get(keys.lease("cam-a"))) is None
                beat = await beat_of(redis_client, keys, "wa")
                assert beat is not None and beat.model == MODEL_B

                failed = await http.put("/api/workers/wa/model", json={"model": "lookout/no-such"})
                assert failed.status_code == 422
                assert "still serves" in failed.text and "not served" in failed.text
                beat = await beat_of(redis_client, keys, "wa")
                assert beat is not None and beat.model == MODEL_B  # rolled back

                moved = await http.put(
                    "/api/workers/wa/model", json={"model": MODEL_A, "base_url": other}
                )
                assert moved.status_code == 200, moved.text
                beat = await beat_of(redis_client, keys, "wa")
                assert beat is not None and (beat.model, beat.server) == (MODEL_A, other)
                stop.set()
    finally:
        api.stop()


async def test_a_worker_with_a_wrong_key_or_model_stops_and_says_why(
    test_env: dict[str, str], openai_server: ServeProcess
) -> None:
    cases = {
        "OPENAI_MODEL": ("lookout/no-such-model", "'lookout/no-such-model' is not served"),
        "OPENAI_API_KEY": ("sk-not-the-key-4242", "refused the API key"),
    }
    for variable, (value, said) in cases.items():
        env = worker_env(test_env, openai_server, MODEL_A, **{variable: value})
        proc = LookoutProcess(["worker", "--worker-id", "bad"], env, "worker-bad")
        try:
            for _ in range(1200):  # up to a minute on a loaded machine
                if not proc.alive():
                    break
                await asyncio.sleep(0.05)
            assert proc.stop() == 1, proc.log()[-2000:]
        finally:
            proc.stop()
        log = proc.log()
        assert said in log and "engine openai cannot run" in log
        assert OPENAI_TEST_KEY not in log and "sk-not-the-key-4242" not in log
