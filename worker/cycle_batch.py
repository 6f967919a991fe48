"""Several sources' commentary cycles through one batched engine call.

Each source's cycle is what `CycleRunner.run` makes of it alone: `started`, its own chunks as
the shared decode steps produce them (`first_chunk` with its own latency), then `finished`,
`interrupted` (its `cancel` was set: only its own request leaves the batch) or `failed`, with
its history entry — each source's end published as soon as that source ends, not when the
whole batch does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass

from worker.cycle import CycleRunner, Outcome, Status
from worker.cycle_call import CallState
from worker.engines.base import NothingNew, WindowFrame
from worker.runner import EngineFailure, EngineRunner


@dataclass(frozen=True)
class BatchJob:
    """One source's window in a batch."""

    source: str
    frames: Sequence[WindowFrame]
    instruction: str
    context: Sequence[str]
    cancel: threading.Event


async def run_batch(
    cycles: CycleRunner, runner: EngineRunner, jobs: Sequence[BatchJob]
) -> list[Outcome]:
    """Run `jobs` as one engine batch and publish every source's cycle; outcomes in order."""
    calls = [await cycles.start(j.source, j.frames, j.instruction, None) for j in jobs]
    requests = [cycles.request(c, j.frames, j.context) for c, j in zip(calls, jobs, strict=True)]
    cancels = [j.cancel for j in jobs]
    outcomes: dict[int, Outcome] = {}
    try:
        async with aclosing(runner.stream_batch(requests, cancels)) as items:
            async for item in items:
                call, cancel = calls[item.index], cancels[item.index]
                if item.chunk is not None:
                    if not cancel.is_set():  # cut off: nothing more goes out for it
                        await cycles.publish(call, item.chunk)
                elif item.error:
                    outcomes[item.index] = await cycles.failed(call, item.error)
                else:
                    ended: Status = "interrupted" if cancel.is_set() else "finished"
                    outcomes[item.index] = await cycles.finish(call, ended)
    except NothingNew as exc:  # engines without a batched path decline one request at a time
        await _end_rest(cycles, calls, cancels, outcomes, declined=str(exc))
    except EngineFailure as exc:  # the whole batch failed: every source not yet ended
        await _end_rest(cycles, calls, cancels, outcomes, error=str(exc))
    # The runner stops reading once every request is cancelled (worker stopping): the ends
    # not seen by then are published here.
    await _end_rest(cycles, calls, cancels, outcomes)
    return [outcomes[index] for index in range(len(jobs))]


async def _end_rest(
    cycles: CycleRunner,
    calls: list[CallState],
    cancels: list[threading.Event],
    outcomes: dict[int, Outcome],
    error: str = "",
    declined: str | None = None,
) -> None:
    """End every call that has no outcome yet: failed, declined, or as far as it got."""
    for index, call in enumerate(calls):
        if index in outcomes:
            continue
        if error:
            outcomes[index] = await cycles.failed(call, error)
        elif declined is not None and not call.parts:
            outcomes[index] = await cycles.declined(call, declined)
        else:
            ended: Status = "interrupted" if cancels[index].is_set() else "finished"
            outcomes[index] = await cycles.finish(call, ended)
