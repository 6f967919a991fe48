"""One round of the commentary loop: the due sources' cycles, alone or as one batch.

For each chosen source: read its state (a removed source is dropped, a missed instruction
applied), take its window, skip it when the scene barely changed, renew its lease; then run
the cycles — one source through `CycleRunner.run`, several through one batched engine call
(`cycle_batch`) — and afterwards, per source: keep its commentary as context, decide its
watch rules, count it, and set when it is due next. Steering cancels only the source whose
instruction changed (its slot's `cancel`), wherever it runs.

When to batch (MAX_BATCH, BATCH_WAIT): a round takes every ready source up to MAX_BATCH at
once and starts at once — at a few sequences a decode step costs about what one sequence's
does, but a wait is paid in full by every source already due. With BATCH_WAIT > 0 a round
that is not full waits up to that long for another held source about to become due (worth
it where sources' intervals are nearly aligned and first-chunk latency matters less than
throughput). Sources that become due while a batch runs go in the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker import status
from worker.cycle import Outcome
from worker.cycle_batch import BatchJob, run_batch
from worker.scheduler import SourceSlot, bounded_context
from worker.windows import Sample

if TYPE_CHECKING:
    from worker.service import CommentaryWorker

log = logging.getLogger(__name__)


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


@dataclass
class _Ready:
    """A source about to run: its window and what its cycle starts from."""

    slot: SourceSlot
    window: list[Sample]
    context: list[str]
    rev: int
    cancel: threading.Event


class SourceServer:
    """Chooses and runs the worker's cycles; `serving` lists the sources running now."""

    def __init__(self, worker: CommentaryWorker) -> None:
        self.w = worker
        self.serving: list[SourceSlot] = []
        self.cycle_count = 0

    def batch_limit(self) -> int:
        """How many sources one round may run: MAX_BATCH, as far as the engine batches."""
        return max(1, min(self.w.settings.max_batch, self.w.runner.batch_capacity()))

    async def choose(self) -> list[SourceSlot]:
        """The ready sources of the next round (BATCH_WAIT: wait a little for more)."""
        scheduler, limit = self.w.scheduler, self.batch_limit()
        chosen = scheduler.pick_batch(limit)
        wait = self.w.settings.batch_wait
        if not chosen or limit == 1 or wait <= 0:
            return chosen
        deadline = time.monotonic() + wait
        while len(chosen) < limit and scheduler.due_before(deadline, chosen):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            scheduler.wake.clear()
            await wait_for(scheduler.wake, left)
            chosen = scheduler.pick_batch(limit)
        return chosen

    async def serve(self, slots: list[SourceSlot]) -> None:
        """Run one round over `slots` (see the module doc)."""
        ready = [r for slot in slots if (r := await self._ready(slot)) is not None]
        if not ready:
            return
        self.serving = [r.slot for r in ready]
        try:
            outcomes = await self._run(ready)
        finally:
            for r in ready:
                r.slot.cancel = None
            self.serving = []
        for r, outcome in zip(ready, outcomes, strict=True):
            await self._after(r, outcome)

    async def _run(self, ready: list[_Ready]) -> list[Outcome]:
        w = self.w
        if len(ready) == 1:
            r = ready[0]
            frames = [s.frame for s in r.window]
            slot = r.slot
            return [await w.cycles.run(slot.name, frames, slot.instruction, r.context, r.cancel)]
        names = ", ".join(r.slot.name for r in ready)
        log.info("%s: one batch of %d sources: %s", w.worker_id, len(ready), names)
        jobs = [
            BatchJob(
                r.slot.name, [s.frame for s in r.window], r.slot.instruction, r.context, r.cancel
            )
            for r in ready
        ]
        return await run_batch(w.cycles, w.runner, jobs)

    async def _ready(self, slot: SourceSlot) -> _Ready | None:
        """Everything before a source's cycle; None where it does not run this round."""
        w, s = self.w, self.w.settings
        slot.last_served = time.monotonic()
        state = await w.registry.state(slot.name)
        if state is None:
            await w.instructions.gone(slot.name)
            await w.keeper.drop(slot.name, "source removed")
            return None
        if not await w.instructions.restored(slot, state):
            slot.apply_instruction(state.instruction, state.instruction_rev, authoritative=True)
            await w.instructions.seen(slot)
        window = slot.buffer.window()
        slot.judged_seq = slot.buffer.newest_seq
        forced, slot.force = slot.force, False
        if not window:
            return None
        if not forced and await self._skip(slot, window):
            return None
        if not await w.leases.renew(slot.name):
            await w.keeper.drop(slot.name, "lease lost")
            return None
        cancel = threading.Event()
        slot.cancel, slot.cancel_reason = cancel, ""
        context = (
            bounded_context(slot.context, s.context_max_chars) if s.context_commentaries else []
        )
        # An instruction that changes meanwhile clears the context for good: `rev` tells.
        return _Ready(slot, window, context, slot.rev, cancel)

    async def _after(self, r: _Ready, outcome: Outcome) -> None:
        """Everything after a source's cycle: context, rules, counts, when it is due next."""
        w, s, slot = self.w, self.w.settings, r.slot
        self.cycle_count += 1
        if outcome.status != "skipped":  # a skip leaves the last commentary as the reference
            slot.detector.commented(r.window)
        if outcome.status == "finished":
            w.speed.add(outcome.tokens, outcome.duration_ms)
        if outcome.status == "finished":
            slot.last_text, slot.last_history_id = outcome.text, outcome.history_id
        if outcome.status == "finished" and slot.rev == r.rev:
            slot.remember(outcome.text, s.context_commentaries)
            slot.last_commentary_wall = time.time()
        # After the commentary (it never waits for rules). A window the engine looked at and
        # found nothing new in is decided too: debounce counts consecutive windows, and a
        # person standing still is "nothing new" to say but still "a person is visible".
        # Its alert points at the last commentary, the newest description of that scene.
        if outcome.status == "skipped" and not slot.last_history_id:  # a worker just started
            slot.last_history_id, slot.last_text = await w.cycles.history.newest(slot.name)
        if outcome.status in ("finished", "skipped"):
            frames = [x.frame for x in r.window]
            await w.rules.after_commentary(
                slot.name,
                frames,
                slot.instruction,
                outcome.cycle,
                slot.last_history_id,
                slot.last_text,
            )
        stat: status.StatName = "cycles" if outcome.status == "finished" else outcome.status
        await status.count(w.redis, w.keys, slot.name, w.worker_id, stat, outcome.latency_ms)
        pause = outcome.audio_seconds + (s.tts_pause_after if outcome.audio_seconds else 0.0)
        slot.next_due = time.monotonic() + s.inference_interval + pause

    async def _skip(self, slot: SourceSlot, window: list[Sample]) -> bool:
        """Skip (and say why) when the scene barely changed since the last commentary."""
        w, s = self.w, self.w.settings
        change = slot.detector.change(window)
        if change is None or change >= s.change_threshold:
            return False
        idle = s.idle_commentary_interval
        if idle > 0 and time.time() - slot.last_commentary_wall >= idle:
            return False  # the periodic "still nothing new"
        slot.next_due = time.monotonic() + s.inference_interval
        reason = f"scene changed {change:.2f} < CHANGE_THRESHOLD {s.change_threshold:g} since the last commentary"
        await w.cycles.skipped(slot.name, reason)
        await status.count(w.redis, w.keys, slot.name, w.worker_id, "skipped")
        return True
