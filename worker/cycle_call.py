"""What one model call carries from its start to its end: the fields every event repeats and
what it accumulates (chunks, tokens, audio, the first chunk's latency), as the history record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from shared.bus import SourcePublisher
from shared.records import CommentaryRecord
from worker.engines.base import WindowFrame


@dataclass(frozen=True)
class Ask:
    """Marks a call as the answer to a one-off question."""

    job_id: str
    question: str


@dataclass(frozen=True)
class EventBase:
    """The fields every event of one call repeats."""

    source: str
    cycle: str
    worker: str
    kind: Literal["commentary", "answer"]
    ask: Ask | None

    def common(self) -> Common:
        """The fields of every cycle event of this call, to spread into one."""
        return Common(
            source=self.source,
            cycle=self.cycle,
            worker=self.worker,
            kind=self.kind,
            job_id=self.ask.job_id if self.ask else None,
            question=self.ask.question if self.ask else None,
        )


class Common(TypedDict):
    source: str
    cycle: str
    worker: str
    kind: Literal["commentary", "answer"]
    job_id: str | None
    question: str | None


@dataclass
class CallState:
    """What one call accumulates between its start and its finish."""

    base: EventBase
    pub: SourcePublisher
    instruction: str
    tracked: bool  # kept as the source's open cycle (commentary, not answers)
    frame_seqs: list[int] = field(default_factory=list)
    frame_ts: list[float] = field(default_factory=list)
    newest: WindowFrame | None = None  # the window's newest frame: its snapshot
    started: float = field(default_factory=time.time)
    parts: list[str] = field(default_factory=list)
    tokens: int = 0
    audio_bytes: int = 0
    latency_ms: float | None = None

    def record(self, status: str, worker: str) -> CommentaryRecord:
        """The history record of this call as it stands."""
        text = "".join(self.parts).strip()
        ask = self.base.ask
        return CommentaryRecord(
            cycle=self.base.cycle,
            status=status,
            text=text,
            instruction=self.instruction,
            kind=self.base.kind,
            worker=worker,
            started_at=self.started,
            duration_ms=(time.time() - self.started) * 1000 if status != "open" else 0.0,
            latency_ms=self.latency_ms or 0.0,
            tokens=self.tokens or len(text.split()),
            frame_seqs=self.frame_seqs,
            question=ask.question if ask else "",
            job_id=ask.job_id if ask else "",
            frame_ts=self.frame_ts,
        )
