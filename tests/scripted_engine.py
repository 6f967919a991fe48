"""A scripted test engine (a stand-in for a model, named as such): yields pre-set chunks.

It implements `worker.engines.base.Engine` for real: `stream` blocks in the worker's engine
thread, sleeps `delay` before each chunk, honours `cancel` between chunks, and records every
request and prompt it received so tests can check what the worker asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from worker.engines.base import (
    Chunk,
    Engine,
    EngineInfo,
    EngineRequest,
    compose_prompt,
)


@dataclass
class Call:
    """One stream() call as the engine saw it."""

    request: EngineRequest
    prompt: str
    started: float
    ended: float = 0.0
    chunks: int = 0
    cancelled: bool = False


@dataclass
class ScriptedEngine(Engine):
    """Yields `chunks` (or `script(request)`) with `delay` seconds before each one."""

    chunks: Sequence[str] = ("The scene ", "shows ", "something.")
    delay: float = 0.01
    script: Callable[[EngineRequest], Sequence[str]] | None = None
    fail_with: str | None = None  # raise EngineError-like RuntimeError with this text
    pcm: bytes | None = None  # speech attached to every chunk, if set
    calls: list[Call] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0
    name: str = "scripted"

    def __post_init__(self) -> None:
        self._guard = threading.Lock()

    def load(self) -> EngineInfo:
        return EngineInfo(engine=self.name, checkpoint="script", dtype="none", device="cpu")

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        call = Call(request=request, prompt=compose_prompt(request), started=time.time())
        with self._guard:
            self.calls.append(call)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.fail_with is not None:
                raise RuntimeError(self.fail_with)
            pieces = self.script(request) if self.script is not None else self.chunks
            for piece in pieces:
                if cancel.wait(self.delay):
                    call.cancelled = True
                    return
                call.chunks += 1
                yield Chunk(text=piece, pcm=self.pcm, tokens=1)
        finally:
            call.ended = time.time()
            with self._guard:
                self.concurrent -= 1

    @property
    def prompts(self) -> list[str]:
        return [c.prompt for c in self.calls]
