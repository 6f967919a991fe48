"""Per-source commentary state and the fair choice of which source runs next.

The worker has one engine, so cycles of its sources run one after another, or, with an
engine that batches (MAX_BATCH > 1), up to MAX_BATCH sources in one running batch. A source is
ready when its INFERENCE_INTERVAL since the last cycle has passed and a new sample has been
taken since then, or at once when its instruction just changed; never while its own cycle
(or the work after it) runs. Among ready sources the one served longest ago goes first
(round-robin); a source without new frames is never ready and costs nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from shared.settings import Settings
from worker.windows import ChangeDetector, SampleBuffer


@dataclass
class SourceSlot:
    """Everything the worker keeps about one source it holds the lease of."""

    name: str
    buffer: SampleBuffer
    detector: ChangeDetector
    instruction: str = ""
    rev: int = -1
    context: deque[str] = field(default_factory=deque)
    next_due: float = 0.0  # monotonic time the next cycle may start
    last_served: float = 0.0  # monotonic time the last cycle (or skip) was decided
    judged_seq: int = -1  # newest sample already run or skipped
    force: bool = False  # instruction changed: run now, whatever the scene
    last_commentary_wall: float = 0.0  # epoch time of the last finished commentary
    # The last finished commentary and its history entry: what a rule decided on a window
    # with nothing new points at (that window has no history entry of its own).
    last_text: str = ""
    last_history_id: str = ""
    cancel: threading.Event | None = None  # set to cut off the cycle running for this source
    cancel_reason: str = ""
    busy: bool = False  # its cycle or its after-cycle work runs in the batch (never picked)

    def has_new_sample(self) -> bool:
        return self.buffer.newest_seq > self.judged_seq

    def apply_instruction(self, instruction: str, rev: int, authoritative: bool = False) -> bool:
        """Adopt a newer instruction; True if it changed (context and reference cleared).

        A control message counts only with a higher revision (pub/sub can reorder nothing,
        but a stale one must not win). The state hash is `authoritative`: any difference
        counts, since a Redis restart starts revisions again from 0.
        """
        if (rev, instruction) == (self.rev, self.instruction):
            return False
        if not authoritative and rev <= self.rev:
            return False
        changed = self.rev >= 0
        self.instruction, self.rev = instruction, rev
        if changed:
            self.context.clear()
            self.detector.reset()
            self.force = True
        return changed

    def remember(self, text: str, keep: int) -> None:
        """Keep a finished commentary for the next prompts."""
        if keep <= 0 or not text.strip():
            return
        self.context.append(text.strip())
        while len(self.context) > keep:
            self.context.popleft()


def bounded_context(texts: deque[str], max_chars: int) -> list[str]:
    """The newest texts whose total length fits `max_chars`; the oldest one is cut at its start."""
    kept: list[str] = []
    room = max_chars
    for text in reversed(texts):
        if room <= 0:
            break
        if len(text) > room:
            text = "…" + text[-(room - 1) :] if room > 1 else ""
        kept.append(text)
        room -= len(text)
    return [t for t in reversed(kept) if t]


class Scheduler:
    """The sources this worker holds and the round-robin choice among the ready ones."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.slots: dict[str, SourceSlot] = {}
        self.wake = asyncio.Event()  # set on new frames or instructions

    def add(self, name: str) -> SourceSlot:
        slot = SourceSlot(
            name=name,
            buffer=SampleBuffer(name, self._settings),
            detector=ChangeDetector(self._settings.change_threshold),
            last_served=time.monotonic(),
        )
        self.slots[name] = slot
        self.wake.set()
        return slot

    def remove(self, name: str, reason: str) -> None:
        slot = self.slots.pop(name, None)
        if slot is not None and slot.cancel is not None:
            slot.cancel_reason = reason
            slot.cancel.set()

    def ready(self, slot: SourceSlot, now: float) -> bool:
        if slot.busy:
            return False
        if slot.force:
            return slot.buffer.newest_seq >= 0
        # Due, and a sample taken since it became due: the window ends at a fresh frame, so
        # the latency does not depend on where the interval falls between two samples.
        return slot.has_new_sample() and now >= slot.next_due <= slot.buffer.newest_arrival

    def pick(self) -> SourceSlot | None:
        """The next source to serve: instruction changes first, then least recently served."""
        chosen = self.pick_batch(1)
        return chosen[0] if chosen else None

    def pick_batch(self, limit: int) -> list[SourceSlot]:
        """Up to `limit` ready sources, in the order `pick` would serve them one by one."""
        now = time.monotonic()
        ready = [s for s in self.slots.values() if self.ready(s, now)]
        return sorted(ready, key=lambda s: (not s.force, s.last_served))[:limit]

    def due_before(self, deadline: float, taken: list[SourceSlot]) -> bool:
        """Whether a source with frames, not in `taken`, becomes due by `deadline`."""
        names = {t.name for t in taken}
        return any(
            s.buffer.newest_seq >= 0 and s.next_due <= deadline
            for s in self.slots.values()
            if s.name not in names and not s.busy
        )

    def seconds_to_next_due(self) -> float | None:
        """How long until a source with a new sample becomes due (None: none waiting)."""
        now = time.monotonic()
        waits = [
            max(0.0, s.next_due - now)
            for s in self.slots.values()
            if s.has_new_sample() and s.next_due <= s.buffer.newest_arrival and not s.busy
        ]
        return min(waits) if waits else None
