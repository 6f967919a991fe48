"""`lookout tail` decodes live messages, and survives malformed ones."""

from __future__ import annotations

import asyncio
import time

import msgpack
import redis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import AudioChunk, CycleFinished, CycleFirstChunk, TextChunk
from tests.helpers import LookoutProcess


async def test_tail_prints_decoded_messages_and_skips_malformed(
    test_env: dict[str, str], redis_client: redis.asyncio.Redis, keys: Keys
) -> None:
    tail = LookoutProcess(["tail", "cam", "--count", "4"], test_env, "tail")
    try:
        sync = redis.Redis.from_url(test_env["REDIS_URL"])
        deadline = time.monotonic() + 20
        while not sync.pubsub_numsub(keys.text_channel("cam"))[0][1]:
            assert time.monotonic() < deadline, tail.log()
            await asyncio.sleep(0.05)
        publisher = SourcePublisher(redis_client, keys, "cam")
        await redis_client.publish(keys.text_channel("cam"), b"\xc1 not msgpack")
        await redis_client.publish(
            keys.text_channel("cam"), msgpack.packb({"type": "text", "v": 7})
        )
        await publisher.text(TextChunk(source="cam", cycle="c1", seq=0, text="A red ball."))
        await publisher.audio(AudioChunk(source="cam", cycle="c1", seq=0, pcm=b"\x00\x00" * 4800))
        await publisher.event(CycleFirstChunk(source="cam", cycle="c1", latency_ms=412.5))
        await publisher.event(
            CycleFinished(source="cam", cycle="c1", text="A red ball.", tokens=3, history_id="9-0")
        )
        assert tail.proc.wait(20) == 0
    finally:
        tail.stop()
    out = tail.log()
    assert "text  cycle=c1 #0: A red ball." in out
    assert "audio cycle=c1 #0: 9600 bytes (0.10s)" in out
    assert "first_chunk latency_ms=412.5" in out
    assert "finished tokens=3 duration_ms=0.0 history_id='9-0' text='A red ball.'" in out
    assert "not a msgpack map" in out and "schema version 7" in out  # logged reasons, no crash


def test_tail_rejects_a_bad_source_name(test_env: dict[str, str]) -> None:
    tail = LookoutProcess(["tail", "bad name"], test_env, "tail")
    assert tail.proc.wait(20) == 2
    assert "invalid source name" in tail.log()
