"""Jobs on every arq queue are msgpack: a pickled job is refused and never unpickled.

The pickle below would create a marker file when unpickled; it is written straight to the
capture queue of a real supervisor process, which must log it as undecodable and fail it.
"""

from __future__ import annotations

import pickle
import signal
import time
from pathlib import Path

import msgpack
import pytest
import redis.asyncio as aioredis
from arq.constants import job_key_prefix, result_key_prefix

from shared import asks
from shared.arqpool import JobFormatError, deserialize_job, serialize_job
from shared.keys import Keys
from shared.settings_env import load_settings
from shared.source_control import CAPTURE_JOB, arq_client
from tests.helpers import LookoutProcess
from tests.worker_support import until


class _TouchOnUnpickle:
    """Unpickling this calls Path.touch(marker): the code a pickled job could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def _pickled_job(marker: Path) -> bytes:
    job = {"t": 1, "f": CAPTURE_JOB, "a": (_TouchOnUnpickle(marker),), "k": {}, "et": 0}
    return pickle.dumps(job)


def test_msgpack_jobs_round_trip_and_a_pickle_is_refused_unopened(tmp_path: Path) -> None:
    job = {"t": 1, "f": "ask", "a": ["cam", "what?"], "k": {}, "et": 1700000000000}
    assert deserialize_job(serialize_job(job)) == job
    marker = tmp_path / "unpickled"
    with pytest.raises(JobFormatError, match="not a msgpack job"):
        deserialize_job(_pickled_job(marker))
    with pytest.raises(JobFormatError, match="expected a map"):
        deserialize_job(msgpack.packb([1, 2]))
    assert not marker.exists()


async def test_every_queue_client_writes_msgpack(
    redis_client: aioredis.Redis, test_env: dict[str, str]
) -> None:
    settings = load_settings(test_env, env_file=None)
    keys = Keys(settings.key_prefix)
    await arq_client(redis_client, settings).enqueue_job(CAPTURE_JOB, "cam", _job_id="c1")
    job_id = await asks.enqueue_ask(redis_client, settings, "cam", "what is there?")
    for key in (job_key_prefix + "c1", job_key_prefix + job_id):
        raw = await redis_client.get(key)
        assert raw is not None and not raw.startswith(b"\x80")  # pickle's protocol marker
        assert deserialize_job(raw)["a"] in (["cam"], ["cam", "what is there?"])
    assert await redis_client.zcard(keys.producer_queue) == 1


@pytest.mark.slow
async def test_supervisor_refuses_a_pickled_capture_job(
    redis_client: aioredis.Redis, test_env: dict[str, str], tmp_path: Path
) -> None:
    settings = load_settings(test_env, env_file=None)
    keys = Keys(settings.key_prefix)
    marker = tmp_path / "unpickled"
    job_id = "capture:evil:000000000001"
    await redis_client.set(job_key_prefix + job_id, _pickled_job(marker))
    await redis_client.zadd(keys.producer_queue, {job_id: int(time.time() * 1000)})
    supervisor = LookoutProcess(["producer", "--supervise"], test_env, "sup-pickle")
    try:

        async def failed() -> bool:
            return bool(await redis_client.exists(result_key_prefix + job_id))

        await until(failed, 30, "the pickled job to be failed")
        assert "deserializing job" in supervisor.log() and job_id in supervisor.log()
        result = deserialize_job(await redis_client.get(result_key_prefix + job_id))
        assert result["s"] is False  # recorded as failed, in msgpack
        assert supervisor.alive()
    finally:
        supervisor.stop(signal.SIGTERM)
    assert not marker.exists()
