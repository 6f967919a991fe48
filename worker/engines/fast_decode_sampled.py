"""Decode with the sampling inside the step's CUDA graph and one step always in flight.

With sampling on the host, every token costs a round trip: the GPU finishes a step, the host
samples (eight small kernels), reads the id (a sync), hands it to the viewer's text, and only
then launches the next step; the GPU waits meanwhile. Here one graph replay does the step,
samples the next id on the device (top-k, top-p, then an exponential race, which draws from
the same distribution as `multinomial` without a host sync) and advances the position. The
host launches step i+1 before it waits for step i's id, copied into pinned memory: the GPU
always has the next step queued. After a stop id one step has run for nothing; its cache
entries lie past the answer and are overwritten by the next window.

Without CUDA (tests) the same loop runs eagerly, so CI exercises its bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from worker.engines.fast_decode_params import SamplingParams

if TYPE_CHECKING:
    from worker.engines.fast_decode import FastDecoder


def sample_on_device(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Next token id [1, 1] from float logits [1, vocab], with no host sync (graph-safe)."""
    if params.temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits / params.temperature
    k = min(params.top_k, scaled.shape[-1]) if params.top_k > 0 else scaled.shape[-1]
    values, indices = torch.topk(scaled, k, dim=-1)
    probs = torch.softmax(values, dim=-1)
    if params.top_p < 1.0:
        keep = (probs.cumsum(dim=-1) - probs) < params.top_p  # always keeps the first
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    race = probs / torch.empty_like(probs).exponential_(1.0)  # argmax ~ Categorical(probs)
    return indices.gather(-1, race.argmax(dim=-1, keepdim=True))


class SampledStep:
    """The decoder's step plus device-side sampling, as one graph (CUDA) or one call (CPU)."""

    def __init__(self, decoder: FastDecoder, params: SamplingParams) -> None:
        self.d = decoder
        self.params = params
        cuda = decoder.device.type == "cuda"
        self.host = torch.zeros((2,), dtype=torch.long, pin_memory=cuda)  # ids of steps i, i+1
        self.events = [torch.cuda.Event() for _ in range(2)] if cuda else []  # type: ignore[no-untyped-call]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_seconds = 0.0
        if cuda and decoder.graph is not None:
            self._capture()

    def _run(self) -> None:
        """Step at `pos` on `tok`; the sampled id goes to `tok`, `pos` advances."""
        self.d._step_fn()
        self.d.tok.copy_(sample_on_device(self.d.logits, self.params))
        self.d.pos.add_(1)

    def _capture(self) -> None:
        started = time.perf_counter()
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._run()
        torch.cuda.synchronize()
        self.graph = graph
        self.capture_seconds = time.perf_counter() - started

    def _launch(self, index: int) -> None:
        """Queue step `index`; its id lands in host slot index % 2."""
        slot = index % 2
        if self.graph is not None:
            self.graph.replay()
        else:
            self._run()
        self.host[slot : slot + 1].copy_(self.d.tok.view(1), non_blocking=bool(self.events))
        if self.events:
            self.events[slot].record()

    def _result(self, index: int) -> int:
        slot = index % 2
        if self.events:
            self.events[slot].synchronize()
        return int(self.host[slot])

    @torch.inference_mode()
    def tokens(
        self, first: torch.Tensor, length: int, max_new_tokens: int, stop_ids: frozenset[int]
    ) -> Iterator[int]:
        """Ids after a prefill of `length` tokens whose first sampled id is `first` ([1])."""
        value = int(first.item())
        yield value
        last = min(max_new_tokens - 2, self.d.max_len - length - 1)  # index of the last step
        if value in stop_ids or last < 0:
            return
        self.d.tok.copy_(first.view(1, 1))
        self.d.pos.fill_(length)
        self._launch(0)
        for index in range(last + 1):
            if index < last:
                self._launch(index + 1)  # queued before waiting: the GPU never idles
            value = self._result(index)
            self.d.steps += 1
            yield value
            if value in stop_ids:
                return
