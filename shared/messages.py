"""Typed, versioned payloads of Lookout's pub/sub channels, with their codec.

Every payload is a msgpack map with `type` (the struct's tag) and `v` (SCHEMA_VERSION), so
`redis-cli SUBSCRIBE` shows a self-describing map and `lookout tail` can print any of them.
`decode_message` turns bytes back into a struct, or raises MessageError with the reason:
a malformed or wrong-version message is logged and dropped by its reader, never a crash.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import msgspec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

CycleEventName = Literal["started", "first_chunk", "finished", "skipped", "interrupted", "failed"]
CommentaryKind = Literal["commentary", "answer"]


PCM_RATE = 48_000  # every speech chunk on the bus: mono s16le PCM at this rate (Hz)


class MessageError(ValueError):
    """A pub/sub payload that is not a valid Lookout message of this schema version."""


class Message(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    """Fields every message has: schema version, source name, send time (epoch seconds)."""

    v: int = SCHEMA_VERSION
    source: str
    ts: float = msgspec.field(default_factory=time.time)


class TextChunk(Message, tag="text", frozen=True):
    """A piece of commentary text, published as soon as the engine produced it."""

    cycle: str
    seq: int
    text: str
    kind: CommentaryKind = "commentary"
    job_id: str | None = None  # set when kind == "answer": the arq job of the question
    question: str | None = None


class AudioChunk(Message, tag="audio", frozen=True):
    """Speech for the text chunk with the same cycle and seq: mono s16le PCM."""

    cycle: str
    seq: int
    pcm: bytes
    sample_rate: int = PCM_RATE


class CycleEvent(Message, tag="cycle", frozen=True):
    """A step of one commentary cycle. Which optional fields are set depends on `event`:

    started: instruction, frame_seqs, frame_ts; first_chunk: latency_ms; finished and
    interrupted: text, tokens, duration_ms, history_id; skipped: reason; failed: error.
    """

    cycle: str
    event: CycleEventName
    worker: str = ""
    kind: CommentaryKind = "commentary"
    instruction: str | None = None
    frame_seqs: list[int] = msgspec.field(default_factory=list)
    frame_ts: list[float] = msgspec.field(default_factory=list)
    latency_ms: float | None = None
    text: str | None = None
    tokens: int | None = None
    duration_ms: float | None = None
    reason: str | None = None
    error: str | None = None
    history_id: str | None = None
    job_id: str | None = None
    question: str | None = None


class InstructionChanged(Message, tag="instruction", frozen=True):
    """The instruction of a source changed (published on its control channel)."""

    instruction: str
    rev: int


class SourceNotice(Message, tag="notice", frozen=True):
    """Something happened to the source itself: registered, removed, producer state."""

    what: str
    detail: str = ""


AnyMessage = TextChunk | AudioChunk | CycleEvent | InstructionChanged | SourceNotice

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyMessage] = msgspec.msgpack.Decoder(AnyMessage)
_version_probe = msgspec.msgpack.Decoder(dict[str, object])


def encode_message(message: AnyMessage) -> bytes:
    """msgpack bytes of `message` (a map with `type` and `v`)."""
    return _encoder.encode(message)


def decode_message(data: bytes) -> AnyMessage:
    """The message in `data`; MessageError says why when it is not a valid one."""
    try:
        probe = _version_probe.decode(data)
    except msgspec.DecodeError as exc:
        raise MessageError(f"not a msgpack map: {exc}") from None
    if probe.get("v") != SCHEMA_VERSION:
        raise MessageError(f"schema version {probe.get('v')!r}, expected {SCHEMA_VERSION}")
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessageError(f"invalid {probe.get('type')!r} message: {exc}") from None


def decode_or_log(data: bytes, where: str) -> AnyMessage | None:
    """Decode, or log the reason and return None (for readers that must keep going)."""
    try:
        return decode_message(data)
    except MessageError as exc:
        log.warning("dropped a message on %s: %s", where, exc)
        return None
