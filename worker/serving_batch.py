"""The worker's running batch: due sources join it, each leaves when its own cycle ends.

Where the engine batches (MAX_BATCH > 1), the commentary loop hands each group of newly due
sources to `BatchServing.join`, which announces their cycles and submits their requests, as
one group, to the engine batch session that is open (runner_batch.py) — or opens one when
none is. Each source's cycle then runs in a task of its own (`cycle_batch.follow`): its
chunks go out as the shared decode steps produce them, and once its request ends the task
does that source's after-cycle work (context, rules, counts, next due) at once, whatever its
batch mates still decode. The join returns as soon as the group is submitted, so the loop
can pick the next due source while the batch runs. A source stays `busy` (never picked) from
its join until its after-cycle work is done; `serving` lists those whose cycles run now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from worker.cycle import Outcome
from worker.cycle_batch import BatchJob, announce, follow, submit
from worker.runner import EngineFailure
from worker.runner_batch import EngineBatch

if TYPE_CHECKING:
    from worker.serving import Ready, SourceServer

log = logging.getLogger(__name__)


class BatchServing:
    """The open engine batch and the tasks of the sources' cycles running in it."""

    def __init__(self, server: SourceServer) -> None:
        self.server = server
        self.batch: EngineBatch | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.backoff = Backoff(0.2, 5.0)

    async def join(self, ready: list[Ready]) -> None:
        """Start `ready`'s cycles in the running batch (or a new one) and return."""
        w, server = self.server.w, self.server
        for r in ready:
            r.slot.busy = True
            server.serving.append(r.slot)
        jobs = [
            BatchJob(
                r.slot.name, [s.frame for s in r.window], r.slot.instruction, r.context, r.cancel
            )
            for r in ready
        ]
        try:
            calls = await announce(w.cycles, jobs)
        except BaseException:
            for r in ready:
                self._ended(r)
                r.slot.busy = False
            raise
        names = ", ".join(r.slot.name for r in ready)
        batch = self.batch
        try:
            if batch is None or batch.closed:
                batch = self.batch = await w.runner.open_batch()
                log.info("%s: one batch of %d sources: %s", w.worker_id, len(ready), names)
            else:
                running = len(server.serving) - len(ready)
                log.info("%s: %s join the running batch of %d", w.worker_id, names, running)
        except EngineFailure as exc:
            for r, call in zip(ready, calls, strict=True):
                self._spawn(r, w.cycles.failed(call, str(exc)))
            return
        for r, started in zip(ready, submit(w.cycles, batch, jobs, calls), strict=True):
            self._spawn(r, follow(w.cycles, started))

    def _spawn(self, r: Ready, outcome: Awaitable[Outcome]) -> None:
        task = asyncio.create_task(self._cycle(r, outcome), name=f"cycle {r.slot.name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _cycle(self, r: Ready, outcome: Awaitable[Outcome]) -> None:
        """One source's cycle to its end, then its after-cycle work; then it may be picked."""
        w, slot = self.server.w, r.slot
        try:
            try:
                ended = await outcome
            finally:
                self._ended(r)
            await self.server.after(r, ended)
            self.backoff.reset()
        except REDIS_ERRORS as exc:
            delay = self.backoff.next()
            log.warning("cycle of %s lost Redis (%s); retrying in %.1fs", slot.name, exc, delay)
            slot.next_due = time.monotonic() + delay
        except Exception:  # a bug must not end the worker silently: say it, go on
            log.exception("cycle of %s failed", slot.name)
            slot.next_due = time.monotonic() + self.backoff.next()
        finally:
            slot.busy = False
            w.scheduler.wake.set()  # a slot is free, and this source may be due again

    def _ended(self, r: Ready) -> None:
        r.slot.cancel = None
        if r.slot in self.server.serving:
            self.server.serving.remove(r.slot)

    async def drain(self) -> None:
        """Wait until every running source's cycle and after-cycle work has ended."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def cancel(self) -> None:
        """Abandon every running cycle (an abrupt stop): their requests leave the batch."""
        for task in self.tasks:
            task.cancel()
