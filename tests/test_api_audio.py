"""Speech through a real `lookout api` process: Ogg/Opus and WAV that ffmpeg decodes, raw PCM,
409 when TTS is off, bad parameters refused. The speech is real: a tone made by ffmpeg,
published as the worker does (AudioChunk on the audio channel).

The bytes per second of speech each format costs a listener are written to
test-artifacts/audio_bandwidth.json (docs/api.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import PCM_RATE, AudioChunk
from shared.sources import SourceRegistry
from tests.helpers import REPO
from tests.test_api_support import ApiServer, subscribed

ARTIFACT = REPO / "test-artifacts" / "audio_bandwidth.json"
TONE_HZ = 440
CHUNK_S = 0.5


@pytest.fixture
def api(test_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer({**test_env, "ENABLE_TTS": "true"}, "api-audio")
    yield server
    server.stop()


@pytest.fixture
async def source(redis_client: aioredis.Redis, keys: Keys) -> AsyncIterator[str]:
    await SourceRegistry(redis_client, keys, "describe").register("cam")
    yield "cam"


def tone(seconds: float) -> bytes:
    """Real PCM from ffmpeg: a 440 Hz sine, mono s16le at 48 kHz."""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"]
        + [f"sine=frequency={TONE_HZ}:duration={seconds}:sample_rate={PCM_RATE}"]
        + ["-f", "s16le", "-ac", "1", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout


def decode(path: Path) -> np.ndarray:
    """ffmpeg's decode of `path` to mono s16le at 48 kHz."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path)]
        + ["-f", "s16le", "-ac", "1", "-ar", str(PCM_RATE), "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return np.frombuffer(out, dtype="<i2")


def ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return dict(json.loads(out))


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * PCM_RATE / len(samples))


async def speak(redis: aioredis.Redis, keys: Keys, pcm: bytes) -> None:
    pub = SourcePublisher(redis, keys, "cam")
    step = int(PCM_RATE * 2 * CHUNK_S)
    for seq, start in enumerate(range(0, len(pcm), step)):
        await pub.audio(AudioChunk(source="cam", cycle="c", seq=seq, pcm=pcm[start : start + step]))


def record(fmt: str, bytes_per_speech_second: float) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    data = json.loads(ARTIFACT.read_text()) if ARTIFACT.is_file() else {}
    data[fmt] = {
        "bytes_per_s": round(bytes_per_speech_second),
        "kbit_per_s": round(bytes_per_speech_second * 8 / 1000, 1),
    }
    ARTIFACT.write_text(json.dumps(data, indent=2))


async def test_opus_stream_decodes_to_the_spoken_tone(
    api: ApiServer, source: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    pcm = tone(3.0)
    body = b""
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=20) as http,
        http.stream("GET", f"/api/sources/{source}/audio?format=opus") as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "audio/ogg; codecs=opus"
        stream = resp.aiter_bytes()
        async with asyncio.timeout(20):
            body += await anext(stream)  # the header pages come before any speech
            assert body.startswith(b"OggS") and b"OpusHead" in body
            headers_len = len(body)
            await subscribed(redis_client, keys.audio_channel(source))
            await speak(redis_client, keys, pcm)
            # One page per chunk: stop once the granule of the newest page covers 3 s.
            while _last_granule(body) < 3 * PCM_RATE:
                body += await anext(stream)
    path = tmp_path / "speech.ogg"
    path.write_bytes(body)
    info = ffprobe(path)
    stream_info = info["streams"][0]  # type: ignore[index]
    assert stream_info["codec_name"] == "opus" and stream_info["channels"] == 1
    decoded = decode(path)
    assert abs(len(decoded) - len(pcm) // 2) < PCM_RATE * 0.1  # all 3 s, within 100 ms
    assert abs(dominant_hz(decoded) - TONE_HZ) < 5
    record("opus", (len(body) - headers_len) / 3.0)


def _last_granule(ogg: bytes) -> int:
    at = ogg.rfind(b"OggS")
    return int.from_bytes(ogg[at + 6 : at + 14], "little", signed=True) if at >= 0 else 0


async def test_wav_clip_is_exact_and_ends_with_silence(
    api: ApiServer, source: str, redis_client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    pcm = tone(1.0)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        async with http.stream("GET", f"/api/sources/{source}/audio?format=wav&seconds=2") as resp:
            assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
            assert resp.headers["content-length"] == str(44 + 2 * PCM_RATE * 2)
            await subscribed(redis_client, keys.audio_channel(source))
            await speak(redis_client, keys, pcm)
            body = await resp.aread()  # ends by itself: 1 s said, then 1 s of silence
    assert len(body) == 44 + 2 * PCM_RATE * 2
    path = tmp_path / "clip.wav"
    path.write_bytes(body)
    assert float(ffprobe(path)["format"]["duration"]) == pytest.approx(2.0)  # type: ignore[index]
    decoded = decode(path)
    assert decoded[: len(pcm) // 2].tobytes() == pcm  # lossless, in order
    assert not decoded[len(pcm) // 2 :].any()
    record("wav", PCM_RATE * 2)
    record("pcm", PCM_RATE * 2)


async def test_pcm_stays_raw_and_speech_off_is_a_409(
    api: ApiServer, test_env: dict[str, str], source: str, redis_client: aioredis.Redis, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        for query in ("format=mp3", "format=wav&seconds=0", "format=wav&seconds=61", "seconds=x"):
            bad = await http.get(f"/api/sources/{source}/audio?{query}")
            assert bad.status_code == 422, query
            assert bad.json()["status"] == 422 and bad.json()["error"], query
        # The worker holding the lease says it does not speak: it wins over ENABLE_TTS.
        await redis_client.set(keys.lease(source), "w1")
        await redis_client.hset(keys.worker_status("w1"), mapping={"tts": "off"})  # type: ignore[misc]
        for fmt in ("pcm", "opus", "wav"):
            off = await http.get(f"/api/sources/{source}/audio?format={fmt}")
            assert off.status_code == 409, fmt
            assert "ENABLE_TTS=true" in off.json()["error"] and off.json()["status"] == 409
