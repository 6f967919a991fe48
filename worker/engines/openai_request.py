"""The body of one chat-completions request: the window's frames as images, then the prompt."""

from __future__ import annotations

import base64
import re
from typing import Any

import cv2
import numpy as np

from shared.jpeg import encode_jpeg
from worker.engines.base import EngineRequest, WindowFrame, compose_prompt

RESIZED_QUALITY = 85  # JPEG quality of frames that had to be downscaled
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
SPEAK_MAX_CHARS = 200  # the longest piece spoken at once when no sentence end comes


def frame_jpeg(frame: WindowFrame, max_edge: int) -> bytes:
    """The frame's JPEG as stored when it fits `max_edge` (0: any size), else downscaled."""
    height, width = frame.image.shape[:2]
    if frame.jpeg and (max_edge <= 0 or max(width, height) <= max_edge):
        return frame.jpeg  # no re-encode: the server sees the producer's own bytes
    image = frame.image
    if max_edge > 0 and max(width, height) > max_edge:
        scale = max_edge / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    return encode_jpeg(image, RESIZED_QUALITY)


def image_part(jpeg: bytes) -> dict[str, Any]:
    """An `image_url` content part carrying the JPEG as a data URL."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def chat_body(
    request: EngineRequest,
    model: str,
    temperature: float,
    max_edge: int,
    audio: bool = False,
) -> dict[str, Any]:
    """The JSON body for `/chat/completions` (the client adds `stream: true`)."""
    count = len(request.frames)
    lead = f"{count} frame{'s' if count != 1 else ''} of a live video, oldest first."
    content = [image_part(frame_jpeg(f, max_edge)) for f in request.frames]
    content.append({"type": "text", "text": f"{lead}\n\n{compose_prompt(request)}"})
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": request.max_new_tokens,
        "temperature": temperature,
    }
    if audio:  # OpenAI's audio output; servers without it answer 400 and the engine falls back
        body["modalities"] = ["text", "audio"]
        body["audio"] = {"voice": "alloy", "format": "pcm16"}
    return body


def split_sentences(buffer: str, max_chars: int = SPEAK_MAX_CHARS) -> tuple[list[str], str]:
    """Whole sentences at the start of `buffer`, and the unfinished rest.

    A run longer than `max_chars` without a sentence end is cut at its last space before that
    (or at `max_chars`): a model that writes no full stop is still spoken as it goes, and no
    piece outgrows a TTS endpoint's input limit (OpenAI's: 4096 characters).
    """
    parts = SENTENCE_END.split(buffer)
    sentences: list[str] = []
    for part in parts[:-1]:
        sentences += [p for p in _cut(part, max_chars) if p.strip()]
    *long_heads, rest = _cut(parts[-1], max_chars)
    return sentences + [p for p in long_heads if p.strip()], rest


def _cut(text: str, max_chars: int) -> list[str]:
    """`text` in pieces of at most `max_chars`, cut at spaces where there are any."""
    pieces = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 1, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ")
    return [*pieces, text]
