"""A batch session: the engine side of continuous batching across sources.

The worker opens one session while any of its sources' cycles runs (`Engine.open_batch`),
submits each newly due source's request to it (`submit`, any thread) and reads every
request's chunks and end from `step` (the engine's thread). A request submitted while others
run joins them at the engine's next step; one whose `cancel` is set leaves within a step;
each ends on its own (a `BatchItem` whose chunk is None).

`SequentialSession` is every engine's default: the requests run one after another through
`Engine.stream`, one chunk per step, so a session behaves like turns. MiniCPM-o's batched
path (`minicpmo_batch.WriterSession`) decodes them together.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from worker.engines.base import BatchItem, Chunk, EngineRequest, NothingNew

if TYPE_CHECKING:
    from worker.engines.base import Engine

# One submitted request: the key its items carry, the request, and its cancel.
Entry = tuple[int, EngineRequest, threading.Event]


class BatchSession(ABC):
    """Requests in, tagged items out; not thread-safe except `submit` (one thread steps)."""

    @abstractmethod
    def submit(self, entries: Sequence[Entry]) -> None:
        """Queue requests due together (any thread); they join at the next step."""

    @abstractmethod
    def step(self) -> Iterator[BatchItem]:
        """Advance every request by about one step: the items that step produced."""

    @abstractmethod
    def pending(self) -> bool:
        """Whether a submitted request has not ended yet (its end item not yet handed out)."""

    def joined(self) -> int:
        """How many requests joined while others were decoding (0: no batched decode)."""
        return 0

    def close(self) -> None:  # noqa: B027 (an optional hook)
        """Free whatever the session holds (a step that failed may leave it half done)."""


class SequentialSession(BatchSession):
    """The requests one after another, each through the engine's own `stream`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: queue.Queue[Entry] = queue.Queue()
        self.current: tuple[int, threading.Event, Iterator[Chunk]] | None = None
        self.queued: deque[Entry] = deque()

    def submit(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self.waiting.put(entry)

    def pending(self) -> bool:
        return self.current is not None or bool(self.queued) or not self.waiting.empty()

    def step(self) -> Iterator[BatchItem]:
        while not self.waiting.empty():
            self.queued.append(self.waiting.get_nowait())
        if self.current is None:
            if not self.queued:
                return
            key, request, cancel = self.queued.popleft()
            self.current = (key, cancel, self.engine.stream(request, cancel))
        key, cancel, chunks = self.current
        if cancel.is_set():  # cut off between chunks, as a lone cycle is
            yield self._end(BatchItem(key))
            return
        try:
            chunk = next(chunks)
        except StopIteration:
            yield self._end(BatchItem(key))
        except NothingNew as exc:
            yield self._end(BatchItem(key, declined=str(exc)))
        except Exception as exc:  # noqa: BLE001 (this request's failure only)
            yield self._end(BatchItem(key, error=f"{type(exc).__name__}: {exc}"))
        else:
            yield BatchItem(key, chunk)

    def _end(self, item: BatchItem) -> BatchItem:
        self.close()
        return item

    def close(self) -> None:
        if self.current is not None:
            stop = getattr(self.current[2], "close", None)  # a generator: run its cleanup
            if stop is not None:
                stop()
            self.current = None
