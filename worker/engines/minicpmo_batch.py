"""MiniCPM-o's batched text path: several sources' windows decoded as one batch.

`BatchedWriter.stream` takes the windows of the sources due together and:

1. makes every prompt's inputs, then runs ONE vision pass over all their frames (SigLIP and
   the resampler over every source's frames at once) and merges each source's vision tokens
   into its own prompt embeddings;
2. prefills all the prompts into per-source slots of a `BatchDecoder` by one forward of
   the LLM (`fast_decode_batch_prefill`): the weights are read once for every source;
3. decodes all slots together (`ContinuousBatch`): one step serves every source, a source
   whose `cancel` is set leaves before the next step, a finished one frees its slot.

Each source's token ids become text chunks on their own `TextAssembler`, handed out tagged
with the source's index as they come. A prompt whose answer cannot fit a slot runs alone
afterwards on the single decoder (or generate()), as `MiniCPMoEngine.stream` would run it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.engines.base import BatchItem, Chunk, EngineRequest, compose_prompt
from worker.engines.fast_decode_batch import BatchDecoder
from worker.engines.fast_decode_batch_loop import _END, BatchRequest, ContinuousBatch
from worker.engines.fast_decode_params import SamplingParams
from worker.engines.fast_decode_stream import TextAssembler, text_chunks


@dataclass(eq=False)
class _Source:
    """One request in the batch: its ids in, its text out."""

    index: int
    request: BatchRequest
    assembler: TextAssembler
    stopped: bool = False  # a stop id came: the rest of its ids are ignored


class BatchedWriter:
    """Runs a MiniCPM-o engine's text requests together over a `BatchDecoder`."""

    def __init__(self, engine: Any, decoder: BatchDecoder) -> None:
        self.engine = engine  # a loaded MiniCPMoEngine (its model, processor, single decoder)
        self.decoder = decoder

    def stream(
        self, requests: Sequence[EngineRequest], cancels: Sequence[threading.Event]
    ) -> Iterator[BatchItem]:
        """Chunks of every request as the shared decode steps produce them, then each end."""
        embeds = self.embeddings(requests)
        batch = ContinuousBatch(self.decoder, joint=True)
        sources: list[_Source] = []
        alone: list[int] = []
        for index, (request, cancel) in enumerate(zip(requests, cancels, strict=True)):
            if int(embeds[index].shape[1]) + request.max_new_tokens > self.decoder.max_len:
                alone.append(index)
                continue
            sources.append(self._submit(batch, index, request, cancel, embeds[index]))
        try:
            while sources:
                if not batch.idle():
                    batch.iterate()
                for source in list(sources):
                    for item in self._drain(source, cancels[source.index]):
                        yield item
                        if item.chunk is None:
                            sources.remove(source)
        finally:  # a failed step or a closed stream leaves no slot busy for the next batch
            for slot in range(self.decoder.slots):
                self.decoder.release(slot)
        for index in alone:
            yield from self._alone(index, requests[index], cancels[index], embeds[index])

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
        index: int,
        request: EngineRequest,
        cancel: threading.Event,
        embeds: torch.Tensor,
    ) -> _Source:
        stop_ids = self.engine.stop_ids
        wanted = BatchRequest(lambda: embeds, request.max_new_tokens, stop_ids, cancel=cancel)
        batch.submit(wanted)
        tokenizer = self.engine.processor.tokenizer
        return _Source(index, wanted, TextAssembler(tokenizer))

    def _drain(self, source: _Source, cancel: threading.Event) -> Iterator[BatchItem]:
        """The chunks of the ids `source` has received so far; its end once the loop ends it."""
        request = source.request
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
                yield BatchItem(source.index, Chunk(text=piece[0], tokens=piece[1]))
        rest = source.assembler.flush()
        if rest is not None and not cancel.is_set() and request.error is None:
            yield BatchItem(source.index, Chunk(text=rest[0], tokens=rest[1]))
        error = request.error
        yield BatchItem(source.index, error=f"{type(error).__name__}: {error}" if error else "")

    def _alone(
        self, index: int, request: EngineRequest, cancel: threading.Event, embeds: torch.Tensor
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
            yield BatchItem(index, chunk)
        yield BatchItem(index)
