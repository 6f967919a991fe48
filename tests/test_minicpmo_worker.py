"""A real `lookout worker` process with ENGINE=minicpmo on MiniCPM-o 4.5's own code (the tiny
random-weights checkpoint, ENGINE_DEVICE=cpu): real frames in through the frames stream,
commentary chunks out through pub/sub and history, as on a GPU box."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.records import CommentaryRecord, FrameRecord
from shared.sources import SourceRegistry
from tests.helpers import LookoutProcess
from tests.media import make_jpegs
from tests.minicpmo_checkpoint import tiny_checkpoint
from tests.worker_support import FAST, Recorder, background, subscribed

pytest.importorskip("torch")
pytest.importorskip("transformers")

__all__ = ["tiny_checkpoint"]  # the fixture, used by name


async def feed(redis: aioredis.Redis, keys: Keys, jpegs: list[bytes], stop: asyncio.Event) -> None:
    """Publish the frames in a loop, as a producer at 10 fps would."""
    seq = 0
    while not stop.is_set():
        record = FrameRecord(seq, time.time(), 640, 360, jpegs[seq % len(jpegs)])
        await redis.xadd(keys.frames("cam"), record.to_fields(), maxlen=100)  # type: ignore[arg-type]
        seq += 1
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_worker_comments_on_real_frames_with_the_models_own_code(
    redis_client: aioredis.Redis, test_env: dict[str, str], keys: Keys, tiny_checkpoint: Path
) -> None:
    await SourceRegistry(redis_client, keys, "Describe the video.").register("cam")
    recorder = Recorder(test_env["REDIS_URL"], keys, ["cam"])
    env = {
        **test_env,
        **FAST,
        "ENGINE": "minicpmo",
        "ENGINE_DEVICE": "cpu",
        "MODEL_PATH": str(tiny_checkpoint),
        "MAX_NEW_TOKENS": "8",
        "CHANGE_THRESHOLD": "0",
        "LEASE_TTL": "10",
        "HEARTBEAT_TTL": "20",
    }
    stop = asyncio.Event()
    worker = LookoutProcess(["worker", "--worker-id", "gpu-test"], env, "minicpmo-worker")
    try:
        async with background(recorder.run(), feed(redis_client, keys, make_jpegs(8), stop)):
            await subscribed(recorder)
            await recorder.wait(lambda: bool(recorder.events("cam", "finished")), within=150)
            beat = await redis_client.hgetall(keys.worker_status("gpu-test"))  # type: ignore[misc]
            stop.set()
    finally:
        code = worker.stop()
    log = worker.log()
    assert code == 0, log
    assert "fast decode off" not in log
    assert (beat[b"engine"], beat[b"decode"], beat[b"prefill"]) == (
        b"minicpmo",
        b"eager",  # the static-cache step (a CUDA graph on a GPU)
        b"bucketed eager",
    )
    finished = recorder.events("cam", "finished")[0]
    chunks = recorder.chunks(finished.cycle)
    assert chunks and "".join(c.text for c in chunks) == finished.text  # type: ignore[attr-defined]
    assert 0 < finished.tokens <= 8  # type: ignore[attr-defined]
    entries = await redis_client.xrange(keys.history("cam"), min=finished.history_id, max="+")  # type: ignore[attr-defined]
    record = CommentaryRecord.from_fields(entries[0][1])
    assert (record.cycle, record.status, record.worker) == (finished.cycle, "finished", "gpu-test")
    status = await redis_client.hgetall(keys.worker_status("gpu-test"))  # type: ignore[misc]
    assert status == {}  # a clean stop removed the heartbeat
