"""The wire of OpenAI-compatible chat completions: streamed events in, clear errors out.

`deltas` turns the Server-Sent Events of `POST /chat/completions` (`stream: true`) into
`Delta`s: text, base64 speech (servers with an `audio` modality), the finish reason. `describe`
turns an error answer into a sentence that says what to change (key, model, image input).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from worker.engines.base import EngineError

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_DETAIL = 300  # characters of a server's error message quoted in ours


@dataclass(frozen=True)
class Delta:
    """One streamed piece of the answer."""

    text: str = ""
    audio_b64: str = ""  # base64 PCM16 (24 kHz mono, OpenAI's `pcm16`)
    finish_reason: str = ""


async def deltas(lines: AsyncIterator[str]) -> AsyncGenerator[Delta, None]:
    """The deltas of an SSE body, until `data: [DONE]` or the end of the stream."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue  # `event:`, `id:`, comments; or a blank line between nothing
        payload, data = "\n".join(data), []
        if payload.strip() == "[DONE]":
            return
        delta = parse_event(payload)
        if delta is not None:
            yield delta
    if data and "\n".join(data).strip() != "[DONE]":
        delta = parse_event("\n".join(data))
        if delta is not None:
            yield delta


def parse_event(payload: str) -> Delta | None:
    """One `chat.completion.chunk` as a Delta (None: nothing in it for us)."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise EngineError(
            f"the server streamed something that is not JSON: {payload[:80]!r}"
        ) from None
    if not isinstance(event, dict):
        raise EngineError(f"the server streamed {type(event).__name__}, not a completion chunk")
    if "error" in event:  # vLLM and SGLang report errors met mid-stream this way
        raise EngineError(f"the server stopped with an error: {error_message(event)}")
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None  # a usage-only chunk
    choice = choices[0]
    delta = choice.get("delta") or {}
    audio = delta.get("audio") if isinstance(delta, dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    return Delta(
        text=text if isinstance(text, str) else "",
        audio_b64=str(audio.get("data") or "") if isinstance(audio, dict) else "",
        finish_reason=str(choice.get("finish_reason") or ""),
    )


def error_message(body: Any) -> str:
    """The human part of an error body: OpenAI's error.message, FastAPI's detail, or the text."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body).strip()[:MAX_DETAIL]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:MAX_DETAIL]
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:MAX_DETAIL]
    return json.dumps(body)[:MAX_DETAIL]


def describe(status: int, body: str, model: str, url: str) -> str:
    """What an error answer means for the user, and which setting to change."""
    detail = error_message(body) or "no detail"
    lowered = detail.lower()
    if status in (401, 403):
        return (
            f"the server at {url} refused the API key ({status}: {detail}); "
            "set OPENAI_API_KEY to a key it accepts"
        )
    if status == 404:
        if "model" in lowered:
            return (
                f"model {model!r} is not served at {url} (404: {detail}); set OPENAI_MODEL "
                "to one its /models lists"
            )
        return f"{url} answered 404 ({detail}); check OPENAI_BASE_URL (it usually ends in /v1)"
    if status in (400, 422) and any(w in lowered for w in ("image", "multimodal", "vision")):
        return f"model {model!r} at {url} does not accept image input ({status}: {detail})"
    if status in (400, 422) and "model" in lowered and model in detail:
        return f"model {model!r} is not served at {url} ({status}: {detail})"
    if status == 429:
        return (
            f"the server at {url} kept limiting the request rate (429: {detail}) through "
            "OPENAI_RETRIES tries; raise its limit, or ask less often (fewer sources per "
            "server, a longer INFERENCE_INTERVAL)"
        )
    return f"the server at {url} answered {status}: {detail}"
