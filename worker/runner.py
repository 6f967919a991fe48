"""Runs the blocking engine in one thread and hands its chunks to the event loop.

There is one engine per worker and one GPU under it, so every model call (commentary or
one-off answer) goes through `EngineRunner.stream`, which holds an asyncio lock for the
whole call: two calls never overlap. `open_batch` holds it for a batch session
(runner_batch.py) instead: sources' requests join and leave that session while it runs, and
it lets the lock go once its last request has ended. The lock is FIFO, so an ask that waits
for the lock runs right after the current cycle (or batch), before the next one; while
someone waits (`others_waiting`), the worker stops adding sources to a running batch. A
rules pass that is a prompt (`Engine.judges_by_prompt`) never waits for an open batch: it
joins it as one more request (`judge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from worker.engines.base import Chunk, Engine, EngineInfo, EngineRequest, NothingNew
from worker.engines.rules_prompt import parse_verdicts, rules_request
from worker.runner_batch import EngineBatch
from worker.runner_batch import EngineFailure as EngineFailure  # every caller's import

log = logging.getLogger(__name__)

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class EngineRunner:
    """Owns the engine, its thread and the lock that keeps model calls one at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._lock = asyncio.Lock()
        self._waiting = 0  # callers waiting for the lock
        self._batch: EngineBatch | None = None  # the last batch opened (open until closed)
        self.info = EngineInfo(engine=engine.name)

    async def load(self) -> EngineInfo:
        """Load the engine in its thread (it blocks for as long as weights take)."""
        loop = asyncio.get_running_loop()
        self.info = await loop.run_in_executor(self._executor, self.engine.load)
        return self.info

    async def stream(
        self, request: EngineRequest, cancel: threading.Event
    ) -> AsyncGenerator[Chunk, None]:
        """Chunks of `request` as the engine yields them; set `cancel` to stop it.

        Leaving the iteration early (break, exception, task cancellation) sets `cancel` and
        waits for the thread to let go of the engine, so the next call starts on an idle one.
        """
        async with self._turn():
            async for chunk in self._pump(lambda: self.engine.stream(request, cancel), [cancel]):
                yield chunk

    async def open_batch(self) -> EngineBatch:
        """A batch session on the engine, holding the lock until its last request has ended
        (runner_batch.py); EngineFailure if the engine cannot open one."""
        async with self._waited():
            await self._lock.acquire()
        loop = asyncio.get_running_loop()
        try:
            session = await loop.run_in_executor(self._executor, self.engine.open_batch)
        except BaseException as exc:
            self._lock.release()
            if isinstance(exc, Exception):
                raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc
            raise
        batch = self._batch = EngineBatch(session, loop)
        running = loop.run_in_executor(self._executor, batch.work)
        running.add_done_callback(lambda _: self._lock.release())
        return batch

    def others_waiting(self) -> bool:
        """Whether a model call waits for the lock (a running batch should stop growing)."""
        return self._waiting > 0

    @contextlib.asynccontextmanager
    async def _waited(self) -> AsyncIterator[None]:
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """The lock, for one model call (counted while waiting for it)."""
        async with self._waited():
            await self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    async def _pump(
        self, produce: Callable[[], Iterator[_Item]], cancels: Sequence[threading.Event]
    ) -> AsyncGenerator[_Item, None]:
        """Run `produce()` in the engine thread, handing its items to the loop as they come."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item | _End] = asyncio.Queue()

        def cancel_all() -> None:
            for cancel in cancels:
                cancel.set()

        def put(item: _Item | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us at shutdown
                cancel_all()

        def work() -> None:
            try:
                for item in produce():
                    put(item)
                    if all(cancel.is_set() for cancel in cancels):
                        break
            except BaseException as exc:  # handed to the loop, which re-raises it
                put(_End(exc))
                return
            put(_End(None))

        future = loop.run_in_executor(self._executor, work)
        ended = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    ended = True
                    if isinstance(item.error, NothingNew):
                        raise item.error  # not a failure: the cycle is skipped
                    if item.error is not None:
                        error = item.error
                        raise EngineFailure(f"{type(error).__name__}: {error}") from error
                    return
                yield item
        finally:
            if not ended:
                cancel_all()  # the caller left early: stop the engine at its next chunk
            # Shielded: even a cancelled caller waits (briefly) for the engine to stop.
            await asyncio.shield(future)

    async def judge(self, request: EngineRequest, conditions: Sequence[str]) -> list[bool | None]:
        """The engine's yes/no on each condition for `request`'s frames (EngineFailure if the
        engine fails).

        Where a batch is open and the engine's rules pass is a prompt (`judges_by_prompt`),
        that prompt (`rules_request`, the one `Engine.judge` streams) joins the batch as one
        more request and its text is parsed as `Engine.judge` parses it: waiting for the lock
        would stop the batch from taking sources until it drained, at every cycle of a source
        with rules. Otherwise `Engine.judge` runs in the engine thread under the lock.
        """
        batch = self._batch
        if conditions and self.engine.judges_by_prompt and batch is not None and not batch.closed:
            text = await batch.text(rules_request(request, conditions))
            return parse_verdicts(text, len(conditions))
        async with self._turn():
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(
                    self._executor, self.engine.judge, request, list(conditions)
                )
            except Exception as exc:
                raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc

    async def swap(self, engine: Engine) -> EngineInfo:
        """Load `engine` and serve with it from now on, the old one closed; once the call in
        flight has ended (the lock). If the load fails the old engine stays, and it raises."""
        async with self._turn():
            loop = asyncio.get_running_loop()
            try:
                info = await loop.run_in_executor(self._executor, engine.load)
            except BaseException:
                await loop.run_in_executor(self._executor, engine.close)
                raise
            old, self.engine, self.info = self.engine, engine, info
            await loop.run_in_executor(self._executor, old.close)
            return info

    def batch_capacity(self) -> int:
        """How many windows the engine decodes together (1: one at a time)."""
        return self.engine.batch_capacity()

    def engine_info(self) -> EngineInfo:
        """The engine's current info (VRAM may change), or what load returned."""
        try:
            return self.engine.info()
        except Exception as exc:  # status must not die of an engine's info()
            log.warning("engine info failed: %s", exc)
            return self.info

    def close(self) -> None:
        """Close the engine and stop its thread."""
        try:
            self.engine.close()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
