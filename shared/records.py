"""Entries of Lookout's Redis streams (frames, commentaries) and ask job results.

Flat fields readable with `redis-cli`: text is UTF-8, numbers are decimal strings, the JPEG is
one binary field. Each record type has `to_fields()` for XADD and `from_fields()` for what
XRANGE/XREAD return (bytes keys and values); `from_fields` raises RecordError naming the bad
field. Status hashes and heartbeats are in shared/status_records.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.record_fields import (
    Fields,
    RecordError,
    field_value,
    number_field,
    number_list,
    text_field,
)


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
        jpeg = field_value(fields, "jpeg")
        if not isinstance(jpeg, bytes) or not jpeg:
            raise RecordError("missing field 'jpeg'")
        return cls(
            seq=number_field(fields, "seq", int),
            ts=number_field(fields, "ts", float),
            width=number_field(fields, "w", int, 0),
            height=number_field(fields, "h", int, 0),
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
        frame_seqs = number_list(fields, "frame_seqs", int)
        frame_ts = number_list(fields, "frame_ts", float)
        return cls(
            cycle=text_field(fields, "cycle"),
            status=text_field(fields, "status"),
            text=text_field(fields, "text"),
            instruction=text_field(fields, "instruction", ""),
            kind=text_field(fields, "kind", "commentary"),
            worker=text_field(fields, "worker", ""),
            started_at=number_field(fields, "started_at", float, 0.0),
            duration_ms=number_field(fields, "duration_ms", float, 0.0),
            latency_ms=number_field(fields, "latency_ms", float, 0.0),
            tokens=number_field(fields, "tokens", int, 0),
            frame_seqs=frame_seqs,
            question=text_field(fields, "question", ""),
            job_id=text_field(fields, "job_id", ""),
            frame_ts=frame_ts,
            snapshot=text_field(fields, "snapshot", "") == "1",
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
        answer, error = field_value(fields, "answer"), field_value(fields, "error")
        if answer is None and error is None:
            raise RecordError("an ask result needs 'answer' or 'error'")
        return cls(
            source=text_field(fields, "source", ""),
            answer=None if answer is None else text_field(fields, "answer"),
            error=None if error is None else text_field(fields, "error"),
            partial=text_field(fields, "partial", ""),
            cycle=text_field(fields, "cycle", ""),
        )
