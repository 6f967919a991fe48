"""An engine batch session held open under the runner's lock, seen from the event loop.

`EngineRunner.open_batch()` waits for the lock (FIFO, like every model call), opens the
engine's `BatchSession` in the engine thread and steps it there while any request runs,
handing each item to the loop, where it goes to its own request's queue. A request submitted
while others run joins them at the engine's next step. Once the last request has ended the
batch closes itself: it takes no more requests, its thread stops and the lock passes to the
next caller (an ask, a model switch, a rules pass the engine decides otherwise, or the next
batch). An exception from a step fails every request not yet ended. `text` runs one more
request to its end in the batch and returns its whole text: a model engine's rules pass
joins the batch that way (runner.py) instead of waiting for it to drain.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence

from worker.engines.base import BatchItem, EngineRequest
from worker.engines.batch_session import BatchSession


class EngineFailure(RuntimeError):
    """The engine raised while streaming; the message names the original error."""


BatchQueue = asyncio.Queue[BatchItem | EngineFailure]


class EngineBatch:
    """One open session: `submit` requests, read each one's items from its queue."""

    def __init__(self, session: BatchSession, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._loop = loop
        self._queues: dict[int, BatchQueue] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._keys = itertools.count()
        self._stop = threading.Event()  # no request left: the thread ends the session
        self._wake = threading.Event()  # a submission (or the stop) for an idle thread
        self.closed = False

    def requests(self) -> int:
        """How many submitted requests have not ended yet (0 once closed)."""
        return len(self._queues)

    def joined(self) -> int:
        """How many requests joined while others were decoding (the engine's count)."""
        return self._session.joined()

    def submit(self, entries: Sequence[tuple[EngineRequest, threading.Event]]) -> list[BatchQueue]:
        """Add requests due together (their frames go through one vision pass where the
        engine batches); each one's chunks and end arrive on its own queue, in order."""
        if self.closed:
            raise RuntimeError("this batch has closed: open another")
        keys = [next(self._keys) for _ in entries]
        queues: list[BatchQueue] = []
        for key, (_, cancel) in zip(keys, entries, strict=True):
            queues.append(self._queues.setdefault(key, asyncio.Queue()))
            self._cancels[key] = cancel
        self._session.submit(
            [(key, request, cancel) for key, (request, cancel) in zip(keys, entries, strict=True)]
        )
        self._wake.set()
        return queues

    async def text(self, request: EngineRequest) -> str:
        """The whole text of `request`, run in this batch (it joins at the next step).

        EngineFailure where it or the batch fails (the same message the lock path gives);
        leaving early (task cancelled) sets its cancel, so it leaves at the next step."""
        cancel = threading.Event()
        [items] = self.submit([(request, cancel)])
        parts: list[str] = []
        ended = False
        try:
            while True:
                item = await items.get()
                if isinstance(item, EngineFailure):  # the whole batch failed
                    ended = True
                    raise EngineFailure(str(item)) from item.__cause__
                if item.chunk is not None:
                    parts.append(item.chunk.text)
                    continue
                ended = True
                if item.error:
                    raise EngineFailure(item.error)
                if item.declined is not None:  # as `Engine.judge` raising it under the lock
                    raise EngineFailure(f"NothingNew: {item.declined}")
                return "".join(parts)
        finally:
            if not ended:
                cancel.set()

    def work(self) -> None:
        """The engine thread: step while a request runs, until the last one has ended."""
        session = self._session
        try:
            while True:
                if not session.pending():
                    if self._stop.is_set():
                        return
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                for item in session.step():
                    self._hand(item)
        except BaseException as exc:  # handed to every request still running
            failure = EngineFailure(f"{type(exc).__name__}: {exc}")
            failure.__cause__ = exc
            self._hand(failure)
        finally:
            session.close()

    def _hand(self, item: BatchItem | EngineFailure) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop closed under us at shutdown: stop everything
            for cancel in list(self._cancels.values()):
                cancel.set()
            self._stop.set()

    def _deliver(self, item: BatchItem | EngineFailure) -> None:
        """On the loop: route `item` to its request's queue; close after the last end."""
        if isinstance(item, EngineFailure):
            for queue in self._queues.values():
                queue.put_nowait(item)
            self._queues.clear()
        elif item.chunk is not None:
            if item.index in self._queues:
                self._queues[item.index].put_nowait(item)
        else:
            ended = self._queues.pop(item.index, None)
            self._cancels.pop(item.index, None)
            if ended is not None:
                ended.put_nowait(item)
        if not self._queues:
            self.closed = True
            self._stop.set()
            self._wake.set()
