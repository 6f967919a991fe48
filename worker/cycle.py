"""One model call on one window, published as it happens: a commentary or an answer.

Events, in order: `started` (frame seqs and capture times), `first_chunk` (latency from the
newest frame's capture to the first chunk), then `finished` or `interrupted` (text, tokens,
duration, the history entry's id) or `failed` (error). Text chunks go out as the engine
yields them; finished and interrupted texts are appended to the history stream before their
event, so the event can carry the history id that SSE clients resume from.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import PCM_RATE, AudioChunk, CycleEvent, TextChunk
from shared.records import CommentaryRecord
from shared.settings import Settings
from worker.engines.base import EngineRequest, WindowFrame
from worker.runner import EngineFailure, EngineRunner

log = logging.getLogger(__name__)

Status = Literal["finished", "interrupted", "failed"]
PCM_BYTES_PER_SECOND = PCM_RATE * 2  # s16le: two bytes a sample


@dataclass(frozen=True)
class Ask:
    """Marks a call as the answer to a one-off question."""

    job_id: str
    question: str


@dataclass(frozen=True)
class Outcome:
    """How a call ended and what it produced."""

    cycle: str
    status: Status
    text: str = ""
    tokens: int = 0
    latency_ms: float | None = None
    duration_ms: float = 0.0
    audio_seconds: float = 0.0
    error: str = ""
    history_id: str = ""


class CycleRunner:
    """Runs and publishes calls for one worker; cycle ids are `{worker_id}-{n}`."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        settings: Settings,
        runner: EngineRunner,
        worker_id: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._runner = runner
        self.worker_id = worker_id
        self._counter = itertools.count(1)
        # A worker restarted with the same --worker-id starts counting at 1 again; the nonce
        # (new at every start) keeps its cycle ids apart from the previous run's.
        self._nonce = secrets.token_hex(3)

    def new_cycle_id(self) -> str:
        """`WORKER-NONCE-N`: unique across workers and across restarts of one worker."""
        return f"{self.worker_id}-{self._nonce}-{next(self._counter)}"

    async def skipped(self, source: str, reason: str) -> None:
        """Publish that a cycle of `source` was skipped, and why."""
        event = CycleEvent(
            source=source,
            cycle=self.new_cycle_id(),
            event="skipped",
            worker=self.worker_id,
            reason=reason,
        )
        await SourcePublisher(self._redis, self._keys, source).event(event)

    async def run(
        self,
        source: str,
        frames: Sequence[WindowFrame],
        instruction: str,
        context: Sequence[str],
        cancel: threading.Event,
        ask: Ask | None = None,
    ) -> Outcome:
        """Run the engine on `frames` and publish everything; `cancel` cuts it off."""
        s = self._settings
        cycle = self.new_cycle_id()
        kind: Literal["commentary", "answer"] = "answer" if ask else "commentary"
        base = _EventBase(source, cycle, self.worker_id, kind, ask)
        pub = SourcePublisher(self._redis, self._keys, source)
        await pub.event(
            base.event(
                "started",
                instruction=instruction,
                frame_seqs=[f.seq for f in frames],
                frame_ts=[f.ts for f in frames],
            )
        )
        request = EngineRequest(
            source=source,
            frames=frames,
            instruction=instruction,
            context=tuple(context),
            max_new_tokens=s.tts_max_new_tokens if s.enable_tts else s.max_new_tokens,
            speak=s.enable_tts,
            kind=kind,
        )
        newest_ts = max(f.ts for f in frames)
        started = time.time()
        parts: list[str] = []
        tokens, audio_bytes, latency_ms = 0, 0, None
        try:
            async with aclosing(self._runner.stream(request, cancel)) as chunks:
                async for chunk in chunks:
                    if cancel.is_set():
                        break  # cut off: nothing more goes out once a cancel is seen
                    seq = len(parts)
                    if latency_ms is None:
                        latency_ms = (time.time() - newest_ts) * 1000
                        await pub.event(base.event("first_chunk", latency_ms=latency_ms))
                    await pub.text(
                        TextChunk(
                            source=source,
                            cycle=cycle,
                            seq=seq,
                            text=chunk.text,
                            kind=kind,
                            job_id=ask.job_id if ask else None,
                            question=ask.question if ask else None,
                        )
                    )
                    if chunk.pcm:
                        audio_bytes += len(chunk.pcm)
                        await pub.audio(
                            AudioChunk(source=source, cycle=cycle, seq=seq, pcm=chunk.pcm)
                        )
                    parts.append(chunk.text)
                    tokens += chunk.tokens
                status: Status = "interrupted" if cancel.is_set() else "finished"
        except EngineFailure as exc:
            # Only engine errors are the cycle's failure; a Redis error goes up to the loop,
            # which waits for the bus (there is no one to tell while it is gone).
            log.error("%s: cycle %s failed: %s", source, cycle, exc)
            error = str(exc)
            await pub.event(base.event("failed", error=error))
            return Outcome(cycle=cycle, status="failed", error=error, latency_ms=latency_ms)
        text = "".join(parts).strip()
        tokens = tokens or len(text.split())
        duration_ms = (time.time() - started) * 1000
        record = CommentaryRecord(
            cycle=cycle,
            status=status,
            text=text,
            instruction=instruction,
            kind=kind,
            worker=self.worker_id,
            started_at=started,
            duration_ms=duration_ms,
            latency_ms=latency_ms or 0.0,
            tokens=tokens,
            frame_seqs=[f.seq for f in frames],
            question=ask.question if ask else "",
            job_id=ask.job_id if ask else "",
        )
        raw_id = await self._redis.xadd(
            self._keys.history(source),
            record.to_fields(),  # type: ignore[arg-type]
            maxlen=s.history_maxlen,
            approximate=True,
        )
        history_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        await pub.event(
            base.event(
                status,
                text=text,
                tokens=tokens,
                duration_ms=duration_ms,
                history_id=history_id,
                latency_ms=latency_ms,
            )
        )
        return Outcome(
            cycle=cycle,
            status=status,
            text=text,
            tokens=tokens,
            latency_ms=latency_ms,
            duration_ms=duration_ms,
            audio_seconds=audio_bytes / PCM_BYTES_PER_SECOND,
            history_id=history_id,
        )


@dataclass(frozen=True)
class _EventBase:
    """The fields every event of one call repeats."""

    source: str
    cycle: str
    worker: str
    kind: Literal["commentary", "answer"]
    ask: Ask | None

    def event(
        self,
        name: Literal["started", "first_chunk", "finished", "interrupted", "failed"],
        **fields: object,
    ) -> CycleEvent:
        return CycleEvent(
            source=self.source,
            cycle=self.cycle,
            event=name,
            worker=self.worker,
            kind=self.kind,
            job_id=self.ask.job_id if self.ask else None,
            question=self.ask.question if self.ask else None,
            **fields,  # type: ignore[arg-type]
        )
