"""The commentary loop against real Redis, with the scripted test engine (a stand-in model)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from shared.bus import Subscription
from shared.keys import Keys
from shared.messages import AudioChunk, TextChunk, encode_message
from shared.records import CommentaryRecord
from shared.sources import SourceRegistry
from shared.status_records import WorkerBeat
from tests.scripted_engine import ScriptedEngine
from tests.worker_support import (
    Feeder,
    Recorder,
    background,
    fast_settings,
    scene,
    subscribed,
    worker,
)
from worker.status import read_stats


async def setup(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys, **env: str
) -> tuple[object, SourceRegistry, Feeder, Recorder]:
    settings = fast_settings(test_env, **env)
    registry = SourceRegistry(redis_client, keys, settings.default_instruction)
    await registry.register("cam")
    feeder = Feeder(redis_client, keys, "cam", scene(1))
    recorder = Recorder(test_env["REDIS_URL"], keys, ["cam"])
    return settings, registry, feeder, recorder


async def test_cycle_publishes_chunks_events_history_and_stats(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, _, feeder, rec = await setup(redis_client, test_env, keys, CHANGE_THRESHOLD="0")
    engine = ScriptedEngine(chunks=("A red ", "square."), delay=0.05)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 2)
            raw = await redis_client.hgetall(keys.worker_status("w1"))  # type: ignore[misc]
        stop.set()
    status = WorkerBeat.from_fields(raw)
    assert (status.worker, status.engine, status.sources) == ("w1", "scripted", ["cam"])
    assert status.pid > 0 and status.beat_ts > time.time() - 60 and status.extra == {}
    finished = rec.events("cam", "finished")[0]
    cycle = finished.cycle
    started = next(e for e in rec.events("cam", "started") if e.cycle == cycle)
    first = next(e for e in rec.events("cam", "first_chunk") if e.cycle == cycle)
    assert started.instruction == settings.default_instruction  # type: ignore[attr-defined]
    assert len(started.frame_seqs) == 2 and started.frame_seqs == sorted(started.frame_seqs)
    assert len(started.frame_ts) == 2 and first.latency_ms is not None and first.latency_ms > 0
    assert [c.text for c in rec.chunks(cycle)] == ["A red ", "square."]
    assert [c.seq for c in rec.chunks(cycle)] == [0, 1]
    assert finished.text == "A red square." and finished.tokens == 2 and finished.history_id
    assert finished.model == "script"  # type: ignore[attr-defined]  # its checkpoint
    entries = await redis_client.xrange(
        keys.history("cam"), min=finished.history_id, max=finished.history_id
    )
    record = CommentaryRecord.from_fields(entries[0][1])
    assert (record.cycle, record.status, record.text) == (cycle, "finished", "A red square.")
    assert record.frame_seqs == started.frame_seqs and record.worker == "w1"
    stats = await read_stats(redis_client, keys, "cam")
    assert stats.cycles >= 2 and stats.mean_latency_ms > 0
    assert stats.last_commentary_ts > 0
    # Cycle ids are unique; a clean stop removes the heartbeat and releases the lease.
    cycles = [e.cycle for e in rec.events("cam", "started")]
    assert len(cycles) == len(set(cycles))
    assert not await redis_client.exists(keys.worker_status("w1"), keys.lease("cam"))


async def test_instruction_change_cuts_off_within_one_chunk_and_restarts_at_once(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    # A long interval: the next cycle must not wait it out after an instruction change.
    settings, registry, feeder, rec = await setup(
        redis_client, test_env, keys, INFERENCE_INTERVAL="30", CHANGE_THRESHOLD="0"
    )
    engine = ScriptedEngine(chunks=[f"word{i} " for i in range(40)], delay=0.1)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(
                lambda: len([m for _, m in rec.messages if getattr(m, "seq", -1) >= 2]) > 0
            )
            first_cycle = rec.events("cam", "started")[0].cycle
            await registry.set_instruction("cam", "count the people")
            changed_at, changed_wall = asyncio.get_running_loop().time(), time.time()
            await rec.wait(lambda: len(rec.events("cam", "interrupted")) == 1)
            await rec.wait(lambda: len(rec.events("cam", "started")) == 2)
            restart_after = asyncio.get_running_loop().time() - changed_at
            await rec.wait(lambda: len(rec.chunks(rec.events("cam", "started")[1].cycle)) >= 1)
        stop.set()
    interrupted = rec.events("cam", "interrupted")[0]
    assert interrupted.cycle == first_cycle and interrupted.history_id
    # Within one chunk: at most one more chunk after the change (the one already in flight).
    sent = len(rec.chunks(first_cycle))
    assert interrupted.text == "".join(c.text for c in rec.chunks(first_cycle)).strip()
    assert sent < 40 and engine.calls[0].chunks <= sent + 1
    late = [
        m for t, m in rec.messages if t > changed_wall and getattr(m, "cycle", "") == first_cycle
    ]
    assert len([m for m in late if isinstance(m, TextChunk)]) <= 1
    second = rec.events("cam", "started")[1]
    assert second.instruction == "count the people"
    assert engine.calls[1].request.instruction == "count the people"
    assert restart_after < 5  # far below INFERENCE_INTERVAL=30
    entries = await redis_client.xrange(keys.history("cam"))
    statuses = [CommentaryRecord.from_fields(f).status for _, f in entries]
    assert statuses[0] == "interrupted"
    stats = await read_stats(redis_client, keys, "cam")
    assert stats.interrupted >= 1


async def test_context_carries_last_commentary_and_clears_on_new_instruction(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, registry, feeder, rec = await setup(
        redis_client, test_env, keys, CHANGE_THRESHOLD="0", CONTEXT_COMMENTARIES="1"
    )
    counter = iter(range(1000))
    engine = ScriptedEngine(script=lambda req: [f"Commentary number {next(counter)}."], delay=0.01)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 2)
            await registry.set_instruction("cam", "describe colours")
            await rec.wait(
                lambda: any(c.request.instruction == "describe colours" for c in engine.calls)
            )
            await rec.wait(lambda: len(engine.calls) >= 4)
        stop.set()
    first, second = engine.calls[0], engine.calls[1]
    assert first.request.context == ()
    assert second.request.context == ("Commentary number 0.",)
    assert "Commentary number 0." in second.prompt
    after = next(c for c in engine.calls if c.request.instruction == "describe colours")
    assert after.request.context == ()  # cleared by the instruction change
    index = engine.calls.index(after)
    assert engine.calls[index + 1].request.context != ()  # and carried again afterwards


async def test_static_scene_is_skipped_with_a_reason_until_a_cut(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, _, feeder, rec = await setup(redis_client, test_env, keys, CHANGE_THRESHOLD="8")
    engine = ScriptedEngine(chunks=("Same scene.",), delay=0.01)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "skipped")) >= 3)
            assert len(rec.events("cam", "finished")) == 1
            feeder.jpeg = scene(2)  # a cut to a different scene
            await rec.wait(lambda: len(rec.events("cam", "finished")) == 2)
        stop.set()
    skipped = rec.events("cam", "skipped")[0]
    assert skipped.reason is not None and "CHANGE_THRESHOLD" in skipped.reason
    stats = await read_stats(redis_client, keys, "cam")
    assert stats.skipped >= 3 and stats.cycles == 2


async def test_idle_commentary_comments_on_a_static_scene_when_enabled(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, _, feeder, rec = await setup(
        redis_client, test_env, keys, CHANGE_THRESHOLD="8", IDLE_COMMENTARY_INTERVAL="0.5"
    )
    engine = ScriptedEngine(chunks=("Still nothing new.",), delay=0.01)
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 3)
        stop.set()
    assert rec.events("cam", "skipped")  # between the idle commentaries
    assert all(len(set(e.frame_seqs)) > 0 for e in rec.events("cam", "started"))


async def test_bad_frames_and_bad_control_messages_are_skipped_and_logged(
    redis_client: aioredis.Redis,
    test_env: dict[str, str],
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, _, feeder, rec = await setup(redis_client, test_env, keys, CHANGE_THRESHOLD="0")
    engine = ScriptedEngine(chunks=("Fine.",), delay=0.01)
    caplog.set_level(logging.WARNING)
    async with background(rec.run()):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await feeder.publish(b"\xff\xd8\xff not really a jpeg")  # no end marker
            await redis_client.xadd(keys.frames("cam"), {"seq": "x", "ts": "1"})
            await rec.wait(lambda: True)
            for _ in range(200):  # the worker's control subscription is a pattern
                if await redis_client.pubsub_numpat() > 0:
                    break
                await asyncio.sleep(0.02)
            await redis_client.publish(keys.control_channel("cam"), b"\x93garbage")
            wrong = TextChunk(source="cam", cycle="x", seq=0, text="not a command")
            await redis_client.publish(keys.control_channel("cam"), encode_message(wrong))
            await asyncio.sleep(0.3)
            for _ in range(3):
                await feeder.publish()
                await asyncio.sleep(0.25)
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 1)
    logs = caplog.text
    assert "skipped frame 0" in logs and "truncated JPEG" in logs
    assert "skipped frame entry" in logs and "dropped a message" in logs
    assert "ignored a TextChunk message" in logs
    started = rec.events("cam", "started")[0]
    assert 0 not in started.frame_seqs  # the corrupt frame never reached the engine


async def test_engine_failure_is_published_and_the_loop_goes_on(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, _, feeder, rec = await setup(redis_client, test_env, keys, CHANGE_THRESHOLD="0")
    engine = ScriptedEngine(fail_with="out of memory")
    stop = asyncio.Event()
    async with background(rec.run(), feeder.run(stop)):
        await subscribed(rec)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "failed")) >= 2)
        stop.set()
    failed = rec.events("cam", "failed")[0]
    assert failed.error == "RuntimeError: out of memory"
    stats = await read_stats(redis_client, keys, "cam")
    assert stats.failed >= 2


async def test_speech_goes_out_with_the_same_cycle_and_seq_as_its_text(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys
) -> None:
    settings, _, feeder, rec = await setup(
        redis_client, test_env, keys, CHANGE_THRESHOLD="0", ENABLE_TTS="true", TTS_PAUSE_AFTER="0"
    )
    pcm = b"\x01\x00" * 4800  # 0.1 s at 48 kHz
    engine = ScriptedEngine(chunks=("Hello ", "there."), delay=0.01, pcm=pcm)
    audio: list[AudioChunk] = []

    async def listen() -> None:
        sub = Subscription(test_env["REDIS_URL"], [keys.audio_channel("cam")])
        async for _, message in sub.messages():
            if isinstance(message, AudioChunk):
                audio.append(message)

    stop = asyncio.Event()
    async with background(rec.run(), listen(), feeder.run(stop)):
        await subscribed(rec)
        await asyncio.sleep(0.1)
        async with worker(settings, engine):  # type: ignore[arg-type]
            await rec.wait(lambda: len(rec.events("cam", "finished")) >= 1)
            await rec.wait(lambda: len(audio) >= 2)
        stop.set()
    cycle = rec.events("cam", "finished")[0].cycle
    texts = {(c.cycle, c.seq) for c in rec.chunks(cycle)}
    spoken = {(a.cycle, a.seq) for a in audio if a.cycle == cycle}
    assert spoken == texts == {(cycle, 0), (cycle, 1)}
    assert all(a.pcm == pcm and a.sample_rate == 48_000 for a in audio)
    request = engine.calls[0].request
    assert request.speak and request.max_new_tokens == settings.tts_max_new_tokens
