"""MiniCPM-o's batched text path: several sources' windows decoded as one batch.

`BatchedWriter.session()` opens a `WriterSession` (a `BatchSession`, see batch_session.py).
The requests submitted together (the sources due at once) are, at the session's next step:

1. made into prompt inputs, then run through ONE vision pass over all their frames (SigLIP
   and the resampler over every source's frames at once), each source's vision tokens
   merged into its own prompt embeddings;
2. prefilled into per-source slots of a `BatchDecoder` by one forward of the LLM
   (`fast_decode_batch_prefill`): the weights are read once for every source;
3. decoded with every other busy slot (`ContinuousBatch`): one step serves every source; a
   source whose `cancel` is set leaves before the next step, a finished one frees its slot,
   and requests submitted while others decode join at the next step (continuous batching).

Each source's token ids become text chunks on their own `TextAssembler`, handed out tagged
with the source's key as they come. A prompt whose answer cannot fit a slot runs alone on the
single decoder (or generate()), as `MiniCPMoEngine.stream` would run it, once the slots have
drained: it shares the single decoder's prefill cache with admissions, so nothing joins while
it waits or runs.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.engines.base import BatchItem, Chunk, EngineRequest, compose_prompt
from worker.engines.batch_session import BatchSession, Entry
from worker.engines.fast_decode_batch import BatchDecoder
from worker.engines.fast_decode_batch_loop import _END, BatchRequest, ContinuousBatch
from worker.engines.fast_decode_params import SamplingParams
from worker.engines.fast_decode_stream import TextAssembler, text_chunks


@dataclass(eq=False)
class _Source:
    """One request in the batch: its ids in, its text out."""

    key: int
    request: BatchRequest
    assembler: TextAssembler
    stopped: bool = False  # a stop id came: the rest of its ids are ignored


class BatchedWriter:
    """Runs a MiniCPM-o engine's text requests together over a `BatchDecoder`."""

    def __init__(self, engine: Any, decoder: BatchDecoder) -> None:
        self.engine = engine  # a loaded MiniCPMoEngine (its model, processor, single decoder)
        self.decoder = decoder
        self.joined = 0  # requests admitted while others decoded, over every closed session

    def session(self) -> WriterSession:
        """A batch session over the slots (one at a time: it owns them while open)."""
        return WriterSession(self)

    def embeddings(self, requests: Sequence[EngineRequest]) -> list[torch.Tensor]:
        """Each request's prompt embeddings [1, L, hidden], the vision encoder run once."""
        from worker.engines import minicpmo_text as text
        from worker.engines.minicpmo_inputs import device_inputs

        engine = self.engine
        tokenizer = engine.processor.tokenizer
        inputs: list[Any] = []
        for request in requests:
            prompt = text.build_prompt_text(tokenizer, len(request.frames), compose_prompt(request))
            made = device_inputs(engine.processor, prompt, list(request.frames), engine.device)
            inputs.append(made if made is not None else engine._inputs(prompt, request))
        with torch.inference_mode():
            merged = {
                "pixel_values": [p for data in inputs for p in data["pixel_values"]],
                "tgt_sizes": [t for data in inputs for t in data["tgt_sizes"]],
            }
            vision = engine.model.get_vision_embedding(merged)  # one pass over every frame
            return [
                text.embed(engine.model, {**data, "vision_hidden_states": [states]})
                for data, states in zip(inputs, vision, strict=True)
            ]

    def _submit(
        self,
        batch: ContinuousBatch,
        key: int,
        request: EngineRequest,
        cancel: threading.Event,
        embeds: torch.Tensor,
    ) -> _Source:
        stop_ids = self.engine.stop_ids
        wanted = BatchRequest(lambda: embeds, request.max_new_tokens, stop_ids, cancel=cancel)
        batch.submit(wanted)
        tokenizer = self.engine.processor.tokenizer
        return _Source(key, wanted, TextAssembler(tokenizer))

    def _drain(self, source: _Source) -> Iterator[BatchItem]:
        """The chunks of the ids `source` has received so far; its end once the loop ends it."""
        request, cancel = source.request, source.request.cancel
        while True:
            try:
                token = request.ids.get_nowait()
            except queue.Empty:
                return
            if token == _END:
                break
            if source.stopped or cancel.is_set():
                continue
            if token in request.stop_ids:
                source.stopped = True
                continue
            piece = source.assembler.add(token)
            if piece is not None:
                yield BatchItem(source.key, Chunk(text=piece[0], tokens=piece[1]))
        rest = source.assembler.flush()
        if rest is not None and not cancel.is_set() and request.error is None:
            yield BatchItem(source.key, Chunk(text=rest[0], tokens=rest[1]))
        error = request.error
        yield BatchItem(source.key, error=f"{type(error).__name__}: {error}" if error else "")

    def _alone(
        self, key: int, request: EngineRequest, cancel: threading.Event, embeds: torch.Tensor
    ) -> Iterator[BatchItem]:
        """A request too long for a slot, the way `MiniCPMoEngine.stream` runs one."""
        from worker.engines import minicpmo_text as text

        engine = self.engine
        params = SamplingParams(temperature=engine.settings.decode_temperature)
        ids = text.token_ids(
            engine.model,
            embeds,
            engine.decoder,
            request.max_new_tokens,
            params,
            engine.stop_ids,
            cancel,
        )
        tokenizer = engine.processor.tokenizer
        for chunk in text_chunks(ids, tokenizer, engine.stop_ids, cancel):
            yield BatchItem(key, chunk)
        yield BatchItem(key)


class WriterSession(BatchSession):
    """A `BatchSession` over a `BatchedWriter`'s slots (see the module doc)."""

    def __init__(self, writer: BatchedWriter) -> None:
        self.writer = writer
        self.batch = ContinuousBatch(writer.decoder, joint=True)
        self.incoming: queue.Queue[list[Entry]] = queue.Queue()  # groups due together
        self.sources: list[_Source] = []
        self.alone: deque[tuple[int, EngineRequest, threading.Event, torch.Tensor]] = deque()

    def joined(self) -> int:
        return self.batch.joined

    def submit(self, entries: Sequence[Entry]) -> None:
        self.incoming.put(list(entries))

    def pending(self) -> bool:
        return bool(self.sources or self.alone) or not self.incoming.empty()

    def step(self) -> Iterator[BatchItem]:
        # A long prompt waits for the slots to drain: nothing joins meanwhile.
        while not self.alone and not self.incoming.empty():
            yield from self._take(self.incoming.get_nowait())
        if not self.batch.idle():
            self.batch.iterate()
        for source in list(self.sources):
            for item in self.writer._drain(source):
                yield item
                if item.chunk is None:
                    self.sources.remove(source)
        if self.alone and not self.sources:
            yield from self.writer._alone(*self.alone.popleft())

    def _take(self, group: list[Entry]) -> Iterator[BatchItem]:
        """Admit a group due together: one vision pass over all its frames, then its
        requests wait for the loop's next iteration (prefilled together where they can)."""
        live = [(key, r, c) for key, r, c in group if not c.is_set()]
        for key, _, cancel in group:
            if cancel.is_set():
                yield BatchItem(key)  # cut off before it started
        if not live:
            return
        try:
            embeds = self.writer.embeddings([r for _, r, _ in live])
        except Exception as exc:  # noqa: BLE001 (this group's failure only)
            for key, _, _ in live:
                yield BatchItem(key, error=f"{type(exc).__name__}: {exc}")
            return
        for (key, request, cancel), made in zip(live, embeds, strict=True):
            if int(made.shape[1]) + request.max_new_tokens > self.writer.decoder.max_len:
                self.alone.append((key, request, cancel, made))
                continue
            self.sources.append(self.writer._submit(self.batch, key, request, cancel, made))

    def close(self) -> None:
        """A failed step or a closed session leaves no slot busy for the next session."""
        for slot in range(self.writer.decoder.slots):
            self.writer.decoder.release(slot)
        self.writer.joined += self.batch.joined
        self.batch.joined = 0  # counted once, however often close is called
