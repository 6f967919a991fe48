"""Typed, versioned payloads of Lookout's pub/sub channels, with their codec.

Every payload is a msgpack map with `type` (the struct's tag; cycle events are `cycle`, with
one struct per step tagged by `event`) and `v` (SCHEMA_VERSION), so
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


class CycleEvent(Message, tag_field="event", kw_only=True, frozen=True):
    """A step of one commentary cycle: one struct per step, in the `CycleEvents` union.

    On the wire `type` is `cycle` and `event` (each struct's tag) names the step, so readers
    switch on `event` and every step carries only its own fields.
    """

    type: Literal["cycle"] = "cycle"
    cycle: str
    worker: str = ""
    kind: CommentaryKind = "commentary"
    job_id: str | None = None  # answers: the arq job of the question
    question: str | None = None

    @property
    def event(self) -> CycleEventName:
        """Which step this is (the `event` field on the wire)."""
        tag: CycleEventName = self.__struct_config__.tag  # type: ignore[assignment]
        return tag


class CycleStarted(CycleEvent, tag="started", kw_only=True, frozen=True):
    """The engine starts on a window of frames."""

    instruction: str = ""
    frame_seqs: list[int] = msgspec.field(default_factory=list)
    frame_ts: list[float] = msgspec.field(default_factory=list)


class CycleFirstChunk(CycleEvent, tag="first_chunk", kw_only=True, frozen=True):
    """The first chunk came: `latency_ms` from the newest frame's capture to it."""

    latency_ms: float


class CycleEnded(CycleEvent, kw_only=True, frozen=True):
    """What a finished or interrupted cycle said, and where its history record is."""

    text: str
    tokens: int = 0
    duration_ms: float = 0.0
    history_id: str  # id of its record in Keys.history (the SSE event id)
    latency_ms: float | None = None  # None when no chunk came
    model: str = ""  # the engine's model id (checkpoint name, or the engine's name)


class CycleFinished(CycleEnded, tag="finished", kw_only=True, frozen=True):
    """The engine said all it had to say."""


class CycleInterrupted(CycleEnded, tag="interrupted", kw_only=True, frozen=True):
    """Cut off (instruction change, shutdown) or closed as lost after its worker died."""


class CycleSkipped(CycleEvent, tag="skipped", kw_only=True, frozen=True):
    """No cycle ran on this window, and why (e.g. the scene did not change)."""

    reason: str


class CycleFailed(CycleEvent, tag="failed", kw_only=True, frozen=True):
    """The engine failed on this window."""

    error: str


CycleEvents = (
    CycleStarted | CycleFirstChunk | CycleFinished | CycleInterrupted | CycleSkipped | CycleFailed
)


class InstructionChanged(Message, tag="instruction", frozen=True):
    """The instruction of a source changed (published on its control channel)."""

    instruction: str
    rev: int


class SourceNotice(Message, tag="notice", frozen=True):
    """Something happened to the source itself: registered, removed, producer state."""

    what: str
    detail: str = ""


class AlertEvent(Message, tag="alert", frozen=True):
    """A watch rule fired or cleared on a window (`ts` is when); also in `Keys.alerts`."""

    alert_id: str  # `RULE-CYCLE`: the idempotency key of its deliveries
    state: Literal["fired", "cleared"]
    rule_id: str
    rule: str  # the rule's name
    condition: str
    cycle: str = ""  # the commentary cycle of the window
    history_id: str = ""  # its history record
    frame_seqs: list[int] = msgspec.field(default_factory=list)
    text: str = ""  # the window's commentary
    snapshot: str = ""  # URL path of the window's newest JPEG (kept ALERT_SNAPSHOT_TTL)
    worker: str = ""


# msgspec tags one union by one field: cycle events by `event`, the others by `type`.
_TypedMessage = TextChunk | AudioChunk | InstructionChanged | SourceNotice | AlertEvent
AnyMessage = _TypedMessage | CycleEvents

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[_TypedMessage] = msgspec.msgpack.Decoder(_TypedMessage)
_cycle_decoder: msgspec.msgpack.Decoder[CycleEvents] = msgspec.msgpack.Decoder(CycleEvents)
_version_probe = msgspec.msgpack.Decoder(dict[str, object])


def encode_message(message: Message) -> bytes:
    """msgpack bytes of `message` (a map with `type` and `v`; a cycle event has `event` too)."""
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
        if probe.get("type") == "cycle":
            return _cycle_decoder.decode(data)
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
