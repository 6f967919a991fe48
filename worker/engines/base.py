"""The one interface the worker loop calls, whatever model (or no model) runs underneath.

An engine is loaded once, then streams chunks for one window at a time. `stream` is a plain
blocking generator: the worker runs it in a thread (GPU libraries block), and checks
`cancel` is honoured by stopping at the next chunk boundary.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from shared.messages import PCM_RATE

if TYPE_CHECKING:
    from worker.engines.batch_session import BatchSession

PCM_SAMPLE_RATE = PCM_RATE  # every engine's speech leaves as 48 kHz mono s16le


@dataclass(frozen=True)
class WindowFrame:
    """One frame of a window: where it came from and its decoded pixels (BGR)."""

    seq: int
    ts: float  # capture time, epoch seconds
    image: npt.NDArray[np.uint8]
    jpeg: bytes = b""


@dataclass(frozen=True)
class EngineRequest:
    """What to comment on: the frames (oldest first), the instruction, what was said before."""

    source: str
    frames: Sequence[WindowFrame]
    instruction: str
    context: Sequence[str] = ()  # earlier commentaries, oldest first
    max_new_tokens: int = 512
    speak: bool = False
    kind: Literal["commentary", "answer"] = "commentary"


@dataclass(frozen=True)
class Chunk:
    """A piece of the answer. `pcm` is the speech of `text` (48 kHz mono s16le), if any."""

    text: str
    pcm: bytes | None = None
    tokens: int = 0  # tokens this chunk accounts for (0 if the engine does not count)


@dataclass
class EngineInfo:
    """What the worker reports about its engine in its status key."""

    engine: str
    checkpoint: str = ""
    dtype: str = ""
    device: str = "cpu"
    load_seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchItem:
    """One event of a batched call: a chunk of request `index`, or (chunk None) its end."""

    index: int
    chunk: Chunk | None = None
    error: str = ""  # set on an end: the request failed with this message
    declined: str | None = None  # set on an end: the engine raised NothingNew (the reason)


class NothingNew(Exception):
    """Raised by `Engine.stream` before its first chunk when the window holds nothing worth
    saying again: the worker records the cycle as `skipped`, with this message as the reason,
    instead of publishing and keeping a commentary that repeats the last one."""


class EngineError(RuntimeError):
    """An engine cannot load or run; the message tells the user what to do."""


class Engine(ABC):
    """Load once with `load()`, then `stream()` one window at a time (never concurrently)."""

    name: str = "engine"
    # Whether `judge` is the prompt-based default: the rules pass is one more generation of
    # `rules_prompt.rules_request(...)` through `stream`, parsed by `parse_verdicts`. The
    # runner then runs that request inside an open batch instead of waiting for the engine
    # (runner.py). An engine that overrides `judge` must say so (`__init_subclass__`).
    judges_by_prompt: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A judge of its own that stayed marked as the prompt would be bypassed by the
        # runner's batched rules pass: an override has to declare which it is.
        if "judge" in vars(cls) and "judges_by_prompt" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides judge(): set judges_by_prompt")

    @abstractmethod
    def load(self) -> EngineInfo:
        """Load weights or resources (blocking). Raise EngineError with a clear message."""

    @abstractmethod
    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        """Yield chunks for `request`; stop early, between chunks, once `cancel` is set."""

    def batch_capacity(self) -> int:
        """How many windows a batch session decodes together (1: no batched path)."""
        return 1

    def open_batch(self) -> BatchSession:
        """A batch session: requests submitted while it runs join it, each ends on its own.

        The default runs them one after another (`SequentialSession`); an engine with a
        batched path overrides it (and `batch_capacity`). Called in the engine's thread.
        """
        from worker.engines.batch_session import SequentialSession

        return SequentialSession(self)

    def stream_batch(
        self, requests: Sequence[EngineRequest], cancels: Sequence[threading.Event]
    ) -> Iterator[BatchItem]:
        """Chunks of several requests, each tagged with its index, and each request's end:
        the requests submitted together to one `open_batch` session, run to their ends. A
        request's `cancel` stops only that request."""
        session = self.open_batch()
        try:
            session.submit(list(zip(range(len(requests)), requests, cancels, strict=True)))
            while session.pending():
                yield from session.step()
        finally:
            session.close()

    def info(self) -> EngineInfo:
        """Current status (VRAM and such may change after load)."""
        return EngineInfo(engine=self.name)

    def close(self) -> None:  # noqa: B027 (an optional hook: most engines hold nothing)
        """Release resources. The default has none to release."""

    def judge(self, request: EngineRequest, conditions: Sequence[str]) -> list[bool | None]:
        """Whether each condition holds on `request`'s frames (None: could not tell).

        The default is the model engines' rules pass (worker/engines/rules_prompt.py): one more
        prompt on the same frames, every condition a numbered yes/no question, parsed strictly.
        """
        from worker.engines.rules_prompt import parse_verdicts, rules_request

        if not conditions:
            return []
        asked = rules_request(request, conditions)
        text = "".join(chunk.text for chunk in self.stream(asked, threading.Event()))
        return parse_verdicts(text, len(conditions))


def compose_prompt(request: EngineRequest) -> str:
    """The text part of the prompt every model engine uses: context, then the instruction."""
    parts: list[str] = []
    if request.context:
        said = "\n".join(f"- {text}" for text in request.context)
        parts.append(f"You already said:\n{said}\nDo not repeat it; say only what is new.")
    parts.append(request.instruction)
    return "\n\n".join(parts)
