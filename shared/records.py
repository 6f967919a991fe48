"""Entries of Lookout's Redis streams and hashes, as flat fields readable with `redis-cli`.

Text is UTF-8, numbers are decimal strings, the JPEG is one binary field. Each record type
has `to_fields()` for XADD and `from_fields()` for what XRANGE/XREAD return (bytes keys and
values); `from_fields` raises RecordError naming the bad field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

Fields = Mapping[bytes, bytes] | Mapping[str, Any]


class RecordError(ValueError):
    """A stream entry with a missing or malformed field."""


def as_text(value: bytes | str | Any) -> str:
    """A Redis reply value as text: bytes decoded as UTF-8 (bad bytes replaced), else str()."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An HGETALL reply (bytes or str keys and values) as a str -> str map."""
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _get(fields: Fields, name: str) -> bytes | str | None:
    raw: Mapping[Any, Any] = fields
    value = raw.get(name.encode(), raw.get(name))
    return value if value is None or isinstance(value, bytes) else str(value)


def _text(fields: Fields, name: str, default: str | None = None) -> str:
    value = _get(fields, name)
    if value is None:
        if default is None:
            raise RecordError(f"missing field {name!r}")
        return default
    return as_text(value)


def _number(
    fields: Fields, name: str, kind: type[int] | type[float], default: float | None = None
) -> Any:
    raw = _text(fields, name, None if default is None else str(default))
    try:
        return kind(raw)
    except ValueError:
        raise RecordError(f"field {name!r}={raw!r} is not a {kind.__name__}") from None


def _numbers(fields: Fields, name: str, kind: type[int] | type[float]) -> list[Any]:
    """A comma-separated list field (empty or missing: no numbers)."""
    raw = _text(fields, name, "")
    try:
        numbers = [kind(part) for part in raw.split(",") if part]
    except ValueError:
        raise RecordError(f"field {name!r}={raw!r} is not a list of {kind.__name__}s") from None
    if kind is float and not all(math.isfinite(n) for n in numbers):
        raise RecordError(f"field {name!r}={raw!r} holds a number that is not finite")
    return numbers


@dataclass(frozen=True)
class FrameRecord:
    """One captured frame in `Keys.frames(source)`."""

    seq: int  # per-source sequence number, increasing from the producer's start
    ts: float  # capture time, epoch seconds, monotonic per source
    width: int
    height: int
    jpeg: bytes

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "seq": str(self.seq),
            "ts": f"{self.ts:.6f}",
            "w": str(self.width),
            "h": str(self.height),
            "jpeg": self.jpeg,
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> FrameRecord:
        jpeg = _get(fields, "jpeg")
        if not isinstance(jpeg, bytes) or not jpeg:
            raise RecordError("missing field 'jpeg'")
        return cls(
            seq=_number(fields, "seq", int),
            ts=_number(fields, "ts", float),
            width=_number(fields, "w", int, 0),
            height=_number(fields, "h", int, 0),
            jpeg=jpeg,
        )


@dataclass(frozen=True)
class CommentaryRecord:
    """One finished or interrupted commentary in `Keys.history(source)`."""

    cycle: str
    status: str  # "finished" | "interrupted" | "lost" (history); "open" (Keys.open_cycle)
    text: str
    instruction: str
    kind: str = "commentary"  # or "answer"
    worker: str = ""
    started_at: float = 0.0  # epoch seconds when the engine started
    duration_ms: float = 0.0
    latency_ms: float = 0.0  # newest frame's capture -> first chunk
    tokens: int = 0
    frame_seqs: list[int] = field(default_factory=list)
    question: str = ""
    job_id: str = ""
    frame_ts: list[float] = field(default_factory=list)  # capture time of each frame_seqs entry
    snapshot: bool = False  # the window's newest frame is kept under the entry's id

    def to_fields(self) -> dict[str, str]:
        return {
            "cycle": self.cycle,
            "status": self.status,
            "kind": self.kind,
            "text": self.text,
            "instruction": self.instruction,
            "worker": self.worker,
            "started_at": f"{self.started_at:.3f}",
            "duration_ms": f"{self.duration_ms:.1f}",
            "latency_ms": f"{self.latency_ms:.1f}",
            "tokens": str(self.tokens),
            "frame_seqs": ",".join(str(s) for s in self.frame_seqs),
            "question": self.question,
            "job_id": self.job_id,
            "frame_ts": ",".join(f"{t:.6f}" for t in self.frame_ts),
            "snapshot": "1" if self.snapshot else "",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> CommentaryRecord:
        frame_seqs = _numbers(fields, "frame_seqs", int)
        frame_ts = _numbers(fields, "frame_ts", float)
        return cls(
            cycle=_text(fields, "cycle"),
            status=_text(fields, "status"),
            text=_text(fields, "text"),
            instruction=_text(fields, "instruction", ""),
            kind=_text(fields, "kind", "commentary"),
            worker=_text(fields, "worker", ""),
            started_at=_number(fields, "started_at", float, 0.0),
            duration_ms=_number(fields, "duration_ms", float, 0.0),
            latency_ms=_number(fields, "latency_ms", float, 0.0),
            tokens=_number(fields, "tokens", int, 0),
            frame_seqs=frame_seqs,
            question=_text(fields, "question", ""),
            job_id=_text(fields, "job_id", ""),
            frame_ts=frame_ts,
            snapshot=_text(fields, "snapshot", "") == "1",
        )


@dataclass(frozen=True)
class AskResult:
    """The result of an ask job (arq stores it as a msgpack map): an answer or an error.

    `partial` is what was said before a cut-off (ASK_TIMEOUT or shutdown); `cycle` is the
    commentary cycle that answered, for finding it in the history.
    """

    source: str = ""
    answer: str | None = None
    error: str | None = None
    partial: str = ""
    cycle: str = ""

    def to_fields(self) -> dict[str, str]:
        fields = {"source": self.source, "partial": self.partial, "cycle": self.cycle}
        if self.answer is not None:
            fields["answer"] = self.answer
        if self.error is not None:
            fields["error"] = self.error
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> AskResult:
        answer, error = _get(fields, "answer"), _get(fields, "error")
        if answer is None and error is None:
            raise RecordError("an ask result needs 'answer' or 'error'")
        return cls(
            source=_text(fields, "source", ""),
            answer=None if answer is None else _text(fields, "answer"),
            error=None if error is None else _text(fields, "error"),
            partial=_text(fields, "partial", ""),
            cycle=_text(fields, "cycle", ""),
        )


class ProducerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A producer's status hash (`Keys.producer_status`), as written and as the API shows it."""

    state: str  # connecting | live | reconnecting | stopped (the API adds failed)
    kind: str = ""
    url: str = ""  # redacted
    fps: float = 0.0  # frames published per second over the last few seconds
    last_frame_ts: float = 0.0
    frames: int = 0
    attempt: int = 0  # reconnect attempts since the last frame
    error: str = ""
    pid: int = 0
    host: str = ""
    updated_at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {
            "state": self.state,
            "kind": self.kind,
            "url": self.url,
            "fps": f"{self.fps:.2f}",
            "last_frame_ts": f"{self.last_frame_ts:.3f}",
            "frames": str(self.frames),
            "attempt": str(self.attempt),
            "error": self.error,
            "pid": str(self.pid),
            "host": self.host,
            "updated_at": f"{self.updated_at:.3f}",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> ProducerStatus:
        return cls(
            state=_text(fields, "state"),
            kind=_text(fields, "kind", ""),
            url=_text(fields, "url", ""),
            fps=_number(fields, "fps", float, 0.0),
            last_frame_ts=_number(fields, "last_frame_ts", float, 0.0),
            frames=_number(fields, "frames", int, 0),
            attempt=_number(fields, "attempt", int, 0),
            error=_text(fields, "error", ""),
            pid=_number(fields, "pid", int, 0),
            host=_text(fields, "host", ""),
            updated_at=_number(fields, "updated_at", float, 0.0),
        )


class SourceStats(msgspec.Struct, frozen=True, kw_only=True):
    """A source's cycle statistics (`Keys.worker_stats`), kept by whichever worker serves it."""

    cycles: int = 0
    skipped: int = 0
    interrupted: int = 0
    failed: int = 0
    answers: int = 0
    last_latency_ms: float = 0.0
    mean_latency_ms: float = 0.0
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    last_commentary_ts: float = 0.0
    worker: str = ""  # the worker that wrote last

    @classmethod
    def from_fields(cls, fields: Fields) -> SourceStats:
        """The hash as HGETALL returns it; missing counters are 0 (written by HINCRBY)."""
        counters = ("cycles", "skipped", "interrupted", "failed", "answers", "latency_count")
        floats = ("last_latency_ms", "mean_latency_ms", "latency_sum_ms", "last_commentary_ts")
        return cls(
            **{name: _number(fields, name, int, 0) for name in counters},
            **{name: _number(fields, name, float, 0.0) for name in floats},
            worker=_text(fields, "worker", ""),
        )


class WorkerBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's heartbeat hash (`Keys.worker_status`), as written and as the API shows it.

    The hash is flat for `redis-cli`: the engine's own fields (`tts`, `decode`, `vram_*`, ...)
    sit beside the fixed ones and are read back into `extra`: decimal numbers as numbers, the
    rest as text, so the API's status shows `"vram_allocated_mib": 1234`, not `"1234"`.
    """

    worker: str = ""
    engine: str = ""
    checkpoint: str = ""
    dtype: str = ""
    device: str = ""
    load_seconds: float = 0.0
    pid: int = 0
    host: str = ""
    sources: list[str] = []
    cycles: int = 0
    started_at: float = 0.0
    beat_ts: float = 0.0  # epoch seconds of the last beat; leases count workers by it
    model: str = ""  # the model id it serves (sources requiring it go to it)
    modalities: list[str] = []  # what it takes and gives: image, text, speech
    tokens_per_s: float = 0.0  # measured over its recent answers (0: none yet)
    server: str = ""  # ENGINE=openai: the server's base URL (password removed)
    server_models: list[str] = []  # ENGINE=openai: what the server's /models lists
    extra: dict[str, str | int | float] = {}

    def to_fields(self) -> dict[str, str]:
        fields = {name: str(value) for name, value in self.extra.items() if name not in BEAT_FIELDS}
        fields.update(
            worker=self.worker,
            engine=self.engine,
            checkpoint=self.checkpoint,
            dtype=self.dtype,
            device=self.device,
            load_seconds=f"{self.load_seconds:.2f}",
            pid=str(self.pid),
            host=self.host,
            sources=",".join(self.sources),
            cycles=str(self.cycles),
            started_at=f"{self.started_at:.3f}",
            beat_ts=f"{self.beat_ts:.3f}",
            model=self.model,
            modalities=",".join(self.modalities),
            tokens_per_s=f"{self.tokens_per_s:.2f}",
            server=self.server,
            server_models=",".join(self.server_models),
        )
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> WorkerBeat:
        text = decode_hash(fields)
        return cls(
            worker=text.get("worker", ""),
            engine=text.get("engine", ""),
            checkpoint=text.get("checkpoint", ""),
            dtype=text.get("dtype", ""),
            device=text.get("device", ""),
            load_seconds=_number(fields, "load_seconds", float, 0.0),
            pid=_number(fields, "pid", int, 0),
            host=text.get("host", ""),
            sources=[s for s in text.get("sources", "").split(",") if s],
            cycles=_number(fields, "cycles", int, 0),
            started_at=_number(fields, "started_at", float, 0.0),
            beat_ts=_number(fields, "beat_ts", float, 0.0),
            model=text.get("model", ""),
            modalities=[m for m in text.get("modalities", "").split(",") if m],
            tokens_per_s=_number(fields, "tokens_per_s", float, 0.0),
            server=text.get("server", ""),
            server_models=[m for m in text.get("server_models", "").split(",") if m],
            extra={k: _scalar(v) for k, v in text.items() if k not in BEAT_FIELDS},
        )

    @property
    def tts(self) -> bool | None:
        """Whether the engine speaks (its `tts` field), None when it does not say."""
        flag = str(self.extra.get("tts", ""))
        return flag.lower() in ("1", "true", "on") if flag else None


_INT_RE = re.compile(r"-?\d{1,18}")
_FLOAT_RE = re.compile(r"-?\d{1,18}\.\d{1,18}")


def _scalar(text: str) -> str | int | float:
    """A hash value as a JSON scalar: plain decimal integers and decimals as numbers (never
    'nan', 'inf' or '1e5', which stay text), everything else as written."""
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


# The hash fields WorkerBeat names; any other field of the hash is the engine's (`extra`).
BEAT_FIELDS = frozenset(WorkerBeat.__struct_fields__) - {"extra"}


class LivekitBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A LiveKit bridge's heartbeat hash (`Keys.livekit_bridge`): the rooms it serves."""

    rooms: str = ""  # comma-separated source names whose rooms it holds
    errors: str = ""  # `source: error` of rooms it cannot join now, `; `-separated
    pid: int = 0
    host: str = ""
    updated_at: float = 0.0

    def to_fields(self) -> dict[str, str]:
        return {
            "rooms": self.rooms,
            "errors": self.errors,
            "pid": str(self.pid),
            "host": self.host,
            "updated_at": f"{self.updated_at:.3f}",
        }

    @classmethod
    def from_fields(cls, fields: Fields) -> LivekitBeat:
        return cls(
            rooms=_text(fields, "rooms", ""),
            errors=_text(fields, "errors", ""),
            pid=_number(fields, "pid", int, 0),
            host=_text(fields, "host", ""),
            updated_at=_number(fields, "updated_at", float, 0.0),
        )
