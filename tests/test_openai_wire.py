"""The chat-completions wire of ENGINE=openai: what servers stream, how errors read, frames."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from shared.jpeg import encode_jpeg, jpeg_size
from shared.models import ModelIdError, validate_model_id
from worker.engines.base import EngineError, EngineRequest, WindowFrame
from worker.engines.openai_request import chat_body, frame_jpeg, split_sentences
from worker.engines.openai_sse import Delta, deltas, describe


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def collect(*items: str) -> list[Delta]:
    return [d async for d in deltas(lines(*items))]


async def test_deltas_follow_the_stream_until_done() -> None:
    got = await collect(
        ": keep-alive",
        'data: {"choices":[{"delta":{"role":"assistant"},"index":0}]}',
        "",
        'data: {"choices":[{"delta":{"content":"A red"},"index":0}]}',
        "",
        "event: ignored",
        'data: {"choices":[{"delta":{"content":" car."},"finish_reason":"stop"}]}',
        "",
        "data: [DONE]",
        "",
        'data: {"choices":[{"delta":{"content":"after done"}}]}',
        "",
    )
    assert "".join(d.text for d in got) == "A red car."
    assert got[-1].finish_reason == "stop"


async def test_audio_deltas_and_usage_only_chunks() -> None:
    got = await collect(
        'data: {"choices":[{"delta":{"audio":{"data":"AAABAA=="}}}]}',
        "",
        'data: {"choices":[],"usage":{"completion_tokens":3}}',
        "",
    )
    assert [d.audio_b64 for d in got] == ["AAABAA=="]


@pytest.mark.parametrize(
    "payload",
    ["data: not json", "data: [1, 2]", 'data: {"error":{"message":"out of memory"}}'],
)
async def test_a_broken_or_failing_stream_is_an_engine_error(payload: str) -> None:
    with pytest.raises(EngineError) as caught:
        await collect(payload, "")
    assert "server" in str(caught.value)


def test_errors_say_what_to_change() -> None:
    url = "http://gpu:8000/v1"
    assert "OPENAI_API_KEY" in describe(401, '{"error":{"message":"bad key"}}', "m", url)
    vllm_404 = '{"object":"error","message":"The model `x` does not exist.","code":404}'
    assert "model 'x' is not served" in describe(404, vllm_404, "x", url)
    assert "OPENAI_BASE_URL" in describe(404, '{"detail":"Not Found"}', "x", url)
    vllm_text_only = '{"message":"Qwen3 is not a multimodal model"}'
    assert "does not accept image input" in describe(400, vllm_text_only, "q", url)
    assert "answered 500" in describe(500, "<html>oops</html>", "q", url)


def frame(width: int, height: int) -> WindowFrame:
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return WindowFrame(1, time.time(), image, encode_jpeg(image, 80))


def test_frames_go_as_stored_unless_too_big() -> None:
    small = frame(160, 90)
    assert frame_jpeg(small, 0) is small.jpeg
    assert frame_jpeg(small, 320) is small.jpeg
    assert jpeg_size(frame_jpeg(small, 80)) == (80, 45)


def test_the_body_carries_every_frame_then_the_prompt() -> None:
    request = EngineRequest(
        source="cam",
        frames=[frame(64, 48), frame(64, 48)],
        instruction="Count the cars.",
        context=("One car.",),
        max_new_tokens=40,
    )
    body = chat_body(request, "m", 0.5, 0)
    content = body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    assert "Count the cars." in content[2]["text"] and "One car." in content[2]["text"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("m", 40, 0.5)
    assert "modalities" not in body
    assert chat_body(request, "m", 0.5, 0, audio=True)["modalities"] == ["text", "audio"]


def test_sentences_are_split_off_whole() -> None:
    assert split_sentences("A car. A bus! Then") == (["A car.", "A bus!"], "Then")
    assert split_sentences("no end yet") == ([], "no end yet")
    # A run without a sentence end is cut at its last space before the limit, else at it.
    assert split_sentences("one two three four", 9) == (["one two", "three"], "four")
    assert split_sentences("x" * 25, 10) == (["x" * 10, "x" * 10], "x" * 5)
    assert split_sentences("A long sentence here. Tail", 8) == (
        ["A long", "sentence", "here."],
        "Tail",
    )


@pytest.mark.parametrize(
    "bad", ["", "../../etc/passwd", "a" * 201, "model\nX-Injected: 1", " lead", "m; rm"]
)
def test_bad_model_ids_are_refused(bad: str) -> None:
    with pytest.raises(ModelIdError):
        validate_model_id(bad)


def test_real_model_ids_pass() -> None:
    for good in ("openbmb/MiniCPM-o-4_5", "gpt-4o-mini", "llava:7b", "org/m@rev", "qwen2.5-vl"):
        assert validate_model_id(good) == good


def test_server_audio_becomes_48k_pcm_whatever_its_wrapping() -> None:
    import base64
    import io
    import wave

    from worker.engines.openai_engine import server_pcm

    samples = (np.sin(np.arange(2400) / 5) * 8000).astype("<i2").tobytes()  # 0.1 s at 24 kHz
    raw = server_pcm(base64.b64encode(samples).decode())
    assert len(raw) == 2 * 4800  # 0.1 s at 48 kHz, s16le
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(samples[: 2 * 1600])  # 0.1 s at 16 kHz
    assert len(server_pcm(base64.b64encode(buffer.getvalue()).decode())) == 2 * 4800
    with pytest.raises(EngineError, match="not base64"):
        server_pcm("not base64 at all!")
