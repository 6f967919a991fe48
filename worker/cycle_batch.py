"""Sources' commentary cycles through an engine batch session (runner_batch.py).

Each source's cycle is what `CycleRunner.run` makes of it alone: `started`, its own chunks as
the shared decode steps produce them (`first_chunk` with its own latency), then `finished`,
`interrupted` (its `cancel` was set: only its own request leaves the batch), `skipped` (the
engine declined it) or `failed`, with its history entry — each source's end published as
soon as that source ends, not when the batch does. `start` announces the cycles of sources
due together and submits their requests as one group; `follow` runs one source's cycle from
its items to its end, whoever else is in the batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from worker.cycle import CycleRunner, Outcome, Status
from worker.cycle_call import CallState
from worker.engines.base import WindowFrame
from worker.runner import EngineFailure, EngineRunner
from worker.runner_batch import BatchQueue, EngineBatch


@dataclass(frozen=True)
class BatchJob:
    """One source's window in a batch."""

    source: str
    frames: Sequence[WindowFrame]
    instruction: str
    context: Sequence[str]
    cancel: threading.Event


@dataclass
class Started:
    """A job whose cycle is announced and whose request is in the batch."""

    job: BatchJob
    call: CallState
    items: BatchQueue


async def announce(cycles: CycleRunner, jobs: Sequence[BatchJob]) -> list[CallState]:
    """Publish every job's `started` and record its open cycle."""
    return [await cycles.start(j.source, j.frames, j.instruction, None) for j in jobs]


def submit(
    cycles: CycleRunner, batch: EngineBatch, jobs: Sequence[BatchJob], calls: list[CallState]
) -> list[Started]:
    """Submit the announced jobs to `batch` as one group (one vision pass where it batches)."""
    requests = [cycles.request(c, j.frames, j.context) for c, j in zip(calls, jobs, strict=True)]
    queues = batch.submit([(r, j.cancel) for r, j in zip(requests, jobs, strict=True)])
    return [Started(j, c, q) for j, c, q in zip(jobs, calls, queues, strict=True)]


async def follow(cycles: CycleRunner, started: Started) -> Outcome:
    """Publish one source's chunks as they come and end its cycle with its request's end.

    Leaving early (task cancelled) sets its cancel: its request leaves the batch."""
    call, cancel = started.call, started.job.cancel
    try:
        while True:
            item = await started.items.get()
            if isinstance(item, EngineFailure):  # the whole batch failed
                return await cycles.failed(call, str(item))
            if item.chunk is not None:
                if not cancel.is_set():  # cut off: nothing more goes out for it
                    await cycles.publish(call, item.chunk)
            elif item.error:
                return await cycles.failed(call, item.error)
            elif item.declined is not None and not call.parts:
                return await cycles.declined(call, item.declined)
            else:
                ended: Status = "interrupted" if cancel.is_set() else "finished"
                return await cycles.finish(call, ended)
    except BaseException:
        cancel.set()  # the engine drops its request at the next step
        raise


async def fail_all(cycles: CycleRunner, calls: list[CallState], error: str) -> list[Outcome]:
    """End announced cycles whose batch could not be opened."""
    return [await cycles.failed(call, error) for call in calls]


async def run_batch(
    cycles: CycleRunner, runner: EngineRunner, jobs: Sequence[BatchJob]
) -> list[Outcome]:
    """Run `jobs` as one group in a batch session of their own, to their ends; outcomes in
    order (tests and tools: the worker keeps its session open across sources instead)."""
    calls = await announce(cycles, jobs)
    try:
        batch = await runner.open_batch()
    except EngineFailure as exc:
        return await fail_all(cycles, calls, str(exc))
    started = submit(cycles, batch, jobs, calls)
    return list(await asyncio.gather(*(follow(cycles, s) for s in started)))
