"""Continuous batching over a BatchDecoder: sources join at the next step and leave within one.

The host loop, one iteration per decode step:

1. admit waiting requests into free slots (one per iteration by default; lowest slot first,
   so the smallest captured batch size serves): the request's `prepare()` makes its prompt
   embeddings (vision, merge) now, the decoder prefills them into the slot and the first
   token goes out at once; with `joint`, all the requests waiting together are prefilled
   by one forward (`fast_decode_batch_prefill`);
2. drop cancelled requests (an interrupted source leaves before the next step is queued);
3. queue one step over the busy slots (a graph replay; token ids copied to pinned memory);
4. read the previous step's ids (the GPU already works on the next one) and hand each busy
   slot its token; a slot that hit a stop id, its token budget or the cache's end leaves.

A step queued before a slot left may still compute for it; its ids are dropped (the request
it belonged to is no longer the slot's) and its cache writes lie past anything that a later
prompt in that slot reads. Requests hand their ids out through a queue, so each source's
text streams as it comes, whoever runs the loop.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from worker.engines.fast_decode_batch import BatchDecoder
from worker.engines.fast_decode_batch_prefill import admit_together

_END = -1


@dataclass(eq=False)
class BatchRequest:
    """One source's window: how to make its prompt, and where its token ids go."""

    prepare: Callable[[], torch.Tensor]  # prompt embeddings [1, L, hidden], made on admission
    max_new_tokens: int
    stop_ids: frozenset[int]
    cancel: threading.Event = field(default_factory=threading.Event)
    ids: queue.Queue[int] = field(default_factory=queue.Queue)
    error: BaseException | None = None

    def tokens(self) -> Iterator[int]:
        """The ids as the loop produces them; raises what failed the request, if anything."""
        while (token := self.ids.get()) != _END:
            yield token
        if self.error is not None:
            raise self.error


@dataclass(eq=False)
class _Busy:
    request: BatchRequest
    steps_left: int  # decode steps this request may still take (tokens, cache room)


class ContinuousBatch:
    """The host loop above. Not thread-safe except `submit`: one thread runs `iterate`."""

    def __init__(self, decoder: BatchDecoder, admit_per_step: int = 1, joint: bool = False) -> None:
        self.decoder = decoder
        # Joint: the requests waiting together are prefilled by one forward (all of them, as
        # far as slots are free), reading the weights once instead of once per source.
        self.joint = joint
        # Admissions per iteration: each one's vision and prefill delay the step of every busy
        # slot, so one per step lets early sources speak before late ones are prefilled (the
        # worst source waits as long either way: docs/benchmarks.md).
        self.admit_per_step = admit_per_step
        self.waiting: queue.Queue[BatchRequest] = queue.Queue()
        self.busy: dict[int, _Busy] = {}
        cuda = decoder.device.type == "cuda"
        ring = 3  # steps in flight at most 2, plus the one being read
        self.host = torch.zeros((ring, decoder.slots), dtype=torch.long, pin_memory=cuda)
        self.events = [torch.cuda.Event() for _ in range(ring)] if cuda else []  # type: ignore[no-untyped-call]
        self.in_flight: deque[tuple[int, list[tuple[int, _Busy]]]] = deque()
        self.launched = 0
        self.steps = 0  # steps run since start (for tests and the bench)
        self.joined = 0  # requests admitted while other slots were decoding

    def submit(self, request: BatchRequest) -> None:
        """Queue a request (any thread); it joins at the loop's next iteration."""
        self.waiting.put(request)

    def idle(self) -> bool:
        return not self.busy and not self.in_flight and self.waiting.empty()

    def iterate(self) -> None:
        """One loop iteration (see the module doc)."""
        running = set(self.busy)
        self._admit()
        if running:
            self.joined += len(self.busy.keys() - running)
        for slot, busy in list(self.busy.items()):
            if busy.request.cancel.is_set():
                self._leave(slot)
        if self.busy:
            self._launch()
        self._collect(keep=1 if self.busy else 0)

    def run(self, stop: threading.Event, poll: float = 0.05) -> None:
        """Iterate until `stop` is set, sleeping on the queue while there is no work."""
        while not stop.is_set():
            if self.idle():
                try:
                    self.waiting.put(self.waiting.get(timeout=poll))
                except queue.Empty:
                    continue
            self.iterate()

    def _admit(self) -> None:
        free = [s for s in range(self.decoder.slots) if s not in self.busy]
        if self.joint and len(free) > 1 and self.waiting.qsize() > 1:
            self._admit_together(free)
            return
        admitted = 0
        while free and admitted < self.admit_per_step and not self.waiting.empty():
            request = self.waiting.get_nowait()
            if request.cancel.is_set():
                self._finish(request)
                continue
            slot = free[0]
            try:
                embeds = request.prepare()
                first = int(self.decoder.admit(slot, embeds).item())
            except Exception as exc:  # noqa: BLE001 (handed to the request's reader)
                request.error = exc
                self._finish(request)
                continue
            if not self._started(slot, request, first, int(embeds.shape[1])):
                continue
            free.pop(0)
            admitted += 1

    def _admit_together(self, free: list[int]) -> None:
        """Every waiting request that a free slot takes, prefilled by one forward."""
        taken: list[tuple[BatchRequest, torch.Tensor]] = []
        while len(taken) < len(free) and not self.waiting.empty():
            request = self.waiting.get_nowait()
            if request.cancel.is_set():
                self._finish(request)
                continue
            try:
                taken.append((request, request.prepare()))
            except Exception as exc:  # noqa: BLE001 (handed to the request's reader)
                request.error = exc
                self._finish(request)
        if not taken:
            return
        slots = free[: len(taken)]
        try:
            firsts = admit_together(self.decoder, slots, [embeds for _, embeds in taken])
        except Exception as exc:  # noqa: BLE001 (handed to every request's reader)
            for slot, (request, _) in zip(slots, taken, strict=True):
                self.decoder.release(slot)
                request.error = exc
                self._finish(request)
            return
        for slot, (request, embeds), first in zip(slots, taken, firsts, strict=True):
            self._started(slot, request, first, int(embeds.shape[1]))

    def _started(self, slot: int, request: BatchRequest, first: int, length: int) -> bool:
        """Hand out a newly prefilled request's first token; keep its slot if it goes on."""
        request.ids.put(first)
        steps = min(request.max_new_tokens - 1, self.decoder.max_len - length)
        if first in request.stop_ids or steps <= 0:
            self.decoder.release(slot)
            self._finish(request)
            return False
        self.busy[slot] = _Busy(request, steps)
        return True

    def _launch(self) -> None:
        size = self.decoder.size_for(max(self.busy))
        row = self.launched % self.host.shape[0]
        self.decoder.launch(size)
        self.host[row, :size].copy_(self.decoder.tok[:size, 0], non_blocking=bool(self.events))
        if self.events:
            self.events[row].record()
        self.in_flight.append((row, list(self.busy.items())))
        self.launched += 1

    def _collect(self, keep: int) -> None:
        while len(self.in_flight) > keep:
            row, members = self.in_flight.popleft()
            if self.events:
                self.events[row].synchronize()
            ids = self.host[row].tolist()
            self.steps += 1
            for slot, busy in members:
                if self.busy.get(slot) is not busy:
                    continue  # left after this step was queued
                token = ids[slot]
                busy.request.ids.put(token)
                busy.steps_left -= 1
                done = token in busy.request.stop_ids or busy.steps_left <= 0
                if done or busy.request.cancel.is_set():
                    self._leave(slot)

    def _leave(self, slot: int) -> None:
        busy = self.busy.pop(slot)
        self.decoder.release(slot)
        self._finish(busy.request)

    @staticmethod
    def _finish(request: BatchRequest) -> None:
        request.ids.put(_END)


def run_all(batch: ContinuousBatch, requests: list[BatchRequest]) -> list[list[int]]:
    """Submit `requests`, iterate until all are done; each one's ids (tests, the bench)."""
    for request in requests:
        batch.submit(request)
    while not batch.idle():
        batch.iterate()
    return [list(r.tokens()) for r in requests]
