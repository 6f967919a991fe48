"""The commentary loop's serving: the due sources' cycles, alone or in the running batch.

For each chosen source: read its state (a removed source is dropped, a missed instruction
applied), take its window, skip it when the scene barely changed, renew its lease; then run
its cycle and afterwards keep its commentary as context, decide its watch rules, count it,
and set when it is due next (`after`). Steering cancels only the source whose instruction
changed (its slot's `cancel`), wherever it runs.

One at a time (MAX_BATCH 1, or an engine that does not batch): `serve` runs the chosen
source's cycle through `CycleRunner.run` and its after-cycle work, and returns. Batched
(serving_batch.py): `serve` puts the chosen sources into the engine batch that runs (or
opens one) and returns at once; each source's after-cycle work follows its own end, and the
loop picks newly due sources while others decode, as long as fewer than MAX_BATCH run
(continuous batching). A model engine's rules pass joins the running batch as one more
request (`EngineRunner.judge`). A batch stops taking sources while another model call (an
ask, a model switch) waits for the engine: it drains, the call runs, then a new one opens.

When to start a batch (BATCH_WAIT): with nothing running, the ready sources up to MAX_BATCH
start at once — at a few sequences a decode step costs about what one sequence's does, but a
wait is paid in full by every source already due. With BATCH_WAIT > 0 a new batch that is not
full waits up to that long for another held source about to become due, so that they share
one vision pass and one prefill (worth it where sources' intervals are nearly aligned and
first-chunk latency matters less than throughput). A source due while a batch runs joins it
at once.
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
from worker.scheduler import SourceSlot, bounded_context
from worker.serving_batch import BatchServing
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
class Ready:
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
        self.batched = BatchServing(self)

    def batch_limit(self) -> int:
        """How many sources may decode together: MAX_BATCH, as far as the engine batches."""
        return max(1, min(self.w.settings.max_batch, self.w.runner.batch_capacity()))

    def room(self) -> int:
        """How many more sources may start now (0 while a waiting model call drains the
        running batch)."""
        if self.serving and self.w.runner.others_waiting():
            return 0
        return self.batch_limit() - len(self.serving)

    def next_wait(self) -> float:
        """How long the loop may sleep when nothing was chosen (a wake cuts it short)."""
        if self.room() <= 0:
            return 1.0  # a source ending sets the wake
        timeout = self.w.scheduler.seconds_to_next_due()
        return 1.0 if timeout is None else max(timeout, 0.01)

    async def choose(self) -> list[SourceSlot]:
        """The ready sources to start now (BATCH_WAIT: a new batch waits a little for more)."""
        scheduler, room = self.w.scheduler, self.room()
        if room <= 0:
            return []
        chosen = scheduler.pick_batch(room)
        wait = self.w.settings.batch_wait
        if not chosen or self.serving or room == 1 or wait <= 0:
            return chosen
        deadline = time.monotonic() + wait
        while len(chosen) < room and scheduler.due_before(deadline, chosen):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            scheduler.wake.clear()
            await wait_for(scheduler.wake, left)
            chosen = scheduler.pick_batch(room)
        return chosen

    async def serve(self, slots: list[SourceSlot]) -> None:
        """Start `slots`' cycles: to their ends one at a time, or into the running batch."""
        ready = [r for slot in slots if (r := await self._ready(slot)) is not None]
        if not ready:
            return
        if self.batch_limit() > 1:
            await self.batched.join(ready)
            return
        for r in ready:  # one (room() is 1), unless a model switch just ended batching
            await self._alone(r)

    async def _alone(self, r: Ready) -> None:
        w, slot = self.w, r.slot
        self.serving.append(slot)
        try:
            frames = [s.frame for s in r.window]
            outcome = await w.cycles.run(slot.name, frames, slot.instruction, r.context, r.cancel)
        finally:
            slot.cancel = None
            self.serving.remove(slot)
        await self.after(r, outcome)

    async def _ready(self, slot: SourceSlot) -> Ready | None:
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
        return Ready(slot, window, context, slot.rev, cancel)

    async def after(self, r: Ready, outcome: Outcome) -> None:
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
