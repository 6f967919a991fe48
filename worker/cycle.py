"""One model call on one window, published as it happens: a commentary or an answer.

Events, in order: `started` (frame seqs and capture times), `first_chunk` (latency from the
newest frame's capture to the first chunk), then `finished` or `interrupted` (text, tokens,
duration, the history entry's id), `failed` (error) or `skipped` (the engine raised
`NothingNew`: nothing worth repeating, no history). Text chunks go out as the engine
yields them; finished and interrupted texts are appended to the history stream before their
event, so the event can carry the history id that SSE clients resume from.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Literal

import redis.asyncio as aioredis

from shared.bus import SourcePublisher
from shared.keys import Keys
from shared.messages import (
    PCM_RATE,
    AudioChunk,
    CycleFailed,
    CycleFinished,
    CycleFirstChunk,
    CycleInterrupted,
    CycleSkipped,
    CycleStarted,
    TextChunk,
)
from shared.settings import Settings
from worker.cycle_call import Ask as Ask
from worker.cycle_call import CallState, EventBase
from worker.engines.base import Chunk, EngineRequest, NothingNew, WindowFrame
from worker.open_cycles import OpenCycles
from worker.runner import EngineFailure, EngineRunner
from worker.snapshots import HistoryWriter, fit_snapshot

log = logging.getLogger(__name__)

Status = Literal["finished", "interrupted", "failed", "skipped"]
PCM_BYTES_PER_SECOND = PCM_RATE * 2  # s16le: two bytes a sample


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
    """Runs and publishes calls for one worker; cycle ids are `{worker_id}-{nonce}-{n}`."""

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
        self.open_cycles = OpenCycles(redis, keys, settings)
        self.history = HistoryWriter(redis, keys, settings.history_maxlen)

    def new_cycle_id(self) -> str:
        """`WORKER-NONCE-N`: unique across workers and across restarts of one worker."""
        return f"{self.worker_id}-{self._nonce}-{next(self._counter)}"

    async def skipped(self, source: str, reason: str) -> None:
        """Publish that a cycle of `source` was skipped, and why."""
        event = CycleSkipped(
            source=source, cycle=self.new_cycle_id(), worker=self.worker_id, reason=reason
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
        call = await self.start(source, frames, instruction, ask)
        request = self.request(call, frames, context)
        try:
            await self._stream(call, request, cancel)
        except NothingNew as exc:
            if not call.parts:  # an engine declines before its first chunk, or not at all
                return await self.declined(call, str(exc))
        except EngineFailure as exc:
            # Only engine errors are the cycle's failure; a Redis error goes up to the loop,
            # which waits for the bus (there is no one to tell while it is gone; the open
            # cycle left in Redis is closed as lost by the next cycle on this source).
            return await self.failed(call, str(exc))
        return await self.finish(call, "interrupted" if cancel.is_set() else "finished")

    def request(
        self, call: CallState, frames: Sequence[WindowFrame], context: Sequence[str]
    ) -> EngineRequest:
        """What the engine gets for `call`."""
        return EngineRequest(
            source=call.base.source,
            frames=frames,
            instruction=call.instruction,
            context=tuple(context),
            max_new_tokens=self._max_new_tokens(),
            speak=self._settings.enable_tts,
            kind=call.base.kind,
        )

    async def failed(self, call: CallState, error: str) -> Outcome:
        """The engine failed this call: say so, close its open cycle."""
        log.error("%s: cycle %s failed: %s", call.base.source, call.base.cycle, error)
        await call.pub.event(CycleFailed(**call.base.common(), error=error))
        if call.tracked:
            await self.open_cycles.end(call.base.source, call.base.cycle)
        return Outcome(
            cycle=call.base.cycle, status="failed", error=error, latency_ms=call.latency_ms
        )

    def _model_id(self) -> str:
        """What the page shows as the model: the checkpoint's last path part, else the engine."""
        info = self._runner.info
        return info.checkpoint.rstrip("/").rsplit("/", 1)[-1] or info.engine

    async def declined(self, call: CallState, reason: str) -> Outcome:
        """The engine had nothing new to say: the started cycle ends as skipped, no history."""
        await call.pub.event(CycleSkipped(**call.base.common(), reason=reason))
        if call.tracked:
            await self.open_cycles.end(call.base.source, call.base.cycle)
        return Outcome(cycle=call.base.cycle, status="skipped")

    def _max_new_tokens(self) -> int:
        s = self._settings
        return s.tts_max_new_tokens if s.enable_tts else s.max_new_tokens

    async def start(
        self, source: str, frames: Sequence[WindowFrame], instruction: str, ask: Ask | None
    ) -> CallState:
        """Close what a dead worker left open here, then announce and record the new cycle."""
        kind: Literal["commentary", "answer"] = "answer" if ask else "commentary"
        tracked = kind == "commentary"  # asks are arq jobs: arq re-runs them after a crash
        if tracked:
            await self.open_cycles.close_orphan(source)
        base = EventBase(source, self.new_cycle_id(), self.worker_id, kind, ask)
        call = CallState(
            base, SourcePublisher(self._redis, self._keys, source), instruction, tracked
        )
        call.frame_seqs = [f.seq for f in frames]
        call.frame_ts = [f.ts for f in frames]
        call.newest = max(frames, key=lambda f: f.ts)
        await call.pub.event(
            CycleStarted(
                **base.common(),
                instruction=instruction,
                frame_seqs=call.frame_seqs,
                frame_ts=call.frame_ts,
            )
        )
        if tracked:
            await self.open_cycles.begin(source, call.record("open", self.worker_id))
        return call

    async def _stream(
        self, call: CallState, request: EngineRequest, cancel: threading.Event
    ) -> None:
        """Publish each chunk the engine yields (text, speech) until it ends or `cancel`."""
        async with aclosing(self._runner.stream(request, cancel)) as chunks:
            async for chunk in chunks:
                if cancel.is_set():
                    break  # cut off: nothing more goes out once a cancel is seen
                await self.publish(call, chunk)

    async def publish(self, call: CallState, chunk: Chunk) -> None:
        """One chunk of `call` out to viewers (the first one also as `first_chunk`)."""
        base, ask = call.base, call.base.ask
        seq = len(call.parts)
        if call.latency_ms is None:
            newest_ts = call.newest.ts if call.newest is not None else time.time()
            call.latency_ms = (time.time() - newest_ts) * 1000
            await call.pub.event(CycleFirstChunk(**base.common(), latency_ms=call.latency_ms))
        await call.pub.text(
            TextChunk(
                source=base.source,
                cycle=base.cycle,
                seq=seq,
                text=chunk.text,
                kind=base.kind,
                job_id=ask.job_id if ask else None,
                question=ask.question if ask else None,
            )
        )
        if chunk.pcm:
            call.audio_bytes += len(chunk.pcm)
            await call.pub.audio(
                AudioChunk(source=base.source, cycle=base.cycle, seq=seq, pcm=chunk.pcm)
            )
        call.parts.append(chunk.text)
        call.tokens += chunk.tokens
        if call.tracked:
            await self.open_cycles.progress(base.source, "".join(call.parts))

    async def finish(self, call: CallState, status: Status) -> Outcome:
        """Append the commentary to history, then announce its end with the history id."""
        base = call.base
        snapshot = b""
        if call.newest is not None:
            budget = self._settings.snapshot_max_bytes
            snapshot = await asyncio.to_thread(fit_snapshot, call.newest, budget)
        record = replace(call.record(status, self.worker_id), snapshot=bool(snapshot))
        history_id = await self.history.append(base.source, record, snapshot)
        if call.tracked:
            await self.open_cycles.end(base.source, base.cycle)
        ended = CycleFinished if status == "finished" else CycleInterrupted
        await call.pub.event(
            ended(
                **base.common(),
                text=record.text,
                tokens=record.tokens,
                duration_ms=record.duration_ms,
                history_id=history_id,
                latency_ms=call.latency_ms,
                model=self._model_id(),
            )
        )
        return Outcome(
            cycle=base.cycle,
            status=status,
            text=record.text,
            tokens=record.tokens,
            latency_ms=call.latency_ms,
            duration_ms=record.duration_ms,
            audio_seconds=call.audio_bytes / PCM_BYTES_PER_SECOND,
            history_id=history_id,
        )
