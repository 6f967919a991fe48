"""Token ids to commentary chunks, shared by the GPU engines.

`TextAssembler` turns a stream of token ids into clean text pieces (special tokens and empty
think blocks stripped, no half UTF-8 characters), cut at word boundaries so viewers get words,
not fragments. `hf_generate_tokens` is the fallback stream of token ids from HF `generate()`
where the fast decoder cannot apply, cancellable through a stopping criterion.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from worker.engines.base import Chunk

SPECIAL_TOKEN = re.compile(r"<\|[^<>|]{1,40}\|>")
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
THINK_TAG = re.compile(r"</?think>")
WORD_END = (" ", "\n", ".", ",", "!", "?", ";", ":")
_END = object()


def strip_special(text: str) -> str:
    """Remove chat-template tokens such as `<|im_end|>` and empty `<think></think>` blocks."""
    text = THINK_BLOCK.sub("", text)
    text = THINK_TAG.sub("", text)
    return SPECIAL_TOKEN.sub("", text)


class TextAssembler:
    """Accumulates token ids; `add` returns a text piece when a word is complete."""

    def __init__(self, tokenizer: Any, max_pending: int = 8) -> None:
        self.tokenizer = tokenizer
        self.max_pending = max_pending
        self.ids: list[int] = []
        self.sent = 0  # characters of the cleaned text already handed out
        self.pending = 0  # tokens not yet accounted for in a piece

    def _clean(self, final: bool) -> str:
        text = strip_special(self.tokenizer.decode(self.ids, skip_special_tokens=True))
        if not final:
            text = text.rstrip("\ufffd")  # a multi-byte character still arriving
            if "<think>" in text and "</think>" not in text:
                text = text[: text.index("<think>")]
        return text.lstrip()  # the answer's leading whitespace is never wanted

    def add(self, token_id: int) -> tuple[str, int] | None:
        """Add one id; return (text, tokens) once a word boundary or `max_pending` is reached."""
        self.ids.append(token_id)
        self.pending += 1
        text = self._clean(final=False)
        piece = text[self.sent :]
        if not piece or (not piece.endswith(WORD_END) and self.pending < self.max_pending):
            return None
        return self._take(text)

    def flush(self) -> tuple[str, int] | None:
        """Whatever is left at the end of the answer, if anything."""
        text = self._clean(final=True).rstrip()
        if len(text) <= self.sent and not self.pending:
            return None
        return self._take(text)

    def _take(self, text: str) -> tuple[str, int]:
        piece, tokens = text[self.sent :], self.pending
        self.sent, self.pending = len(text), 0
        return piece, tokens


def stop_token_ids(
    tokenizer: Any, names: Iterable[str], extra: Iterable[int] = ()
) -> frozenset[int]:
    """Ids of the named stop tokens that this tokenizer knows, plus `extra` ids."""
    ids = set(extra)
    unknown = getattr(tokenizer, "unk_token_id", None)
    for name in names:
        value = tokenizer.convert_tokens_to_ids(name)
        if isinstance(value, int) and value >= 0 and value != unknown:
            ids.add(value)
    if isinstance(getattr(tokenizer, "eos_token_id", None), int):
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


class _IdStreamer:
    """A transformers streamer (duck-typed BaseStreamer) handing new token ids to a queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt ids
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(int(token))

    def end(self) -> None:
        self.queue.put(_END)


def hf_generate_tokens(
    generate: Callable[..., Any], kwargs: dict[str, Any], cancel: threading.Event
) -> Iterator[int]:
    """Run `generate(**kwargs, streamer=...)` in a thread and yield new token ids.

    Leaving the loop early (or `cancel` being set) stops generation at its next token.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    stop = threading.Event()

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
            flag = stop.is_set() or cancel.is_set()
            return torch.full(
                (input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device
            )

    streamer = _IdStreamer()
    criteria = StoppingCriteriaList([_Stop()])  # type: ignore[no-untyped-call]
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                generate(**kwargs, streamer=streamer, stopping_criteria=criteria)
        except BaseException as exc:  # handed to the consumer below
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, name="hf-generate", daemon=True)
    thread.start()
    try:
        while True:
            item = streamer.queue.get()
            if item is _END:
                break
            assert isinstance(item, int)
            yield item
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def text_chunks(
    ids: Generator[int, None, None],
    tokenizer: Any,
    stop_ids: frozenset[int],
    cancel: threading.Event,
) -> Iterator[Chunk]:
    """Chunks of clean text from a stream of token ids; stops at a stop id or on `cancel`.

    Closes `ids` on the way out, which stops the decoder (or generate() thread) behind it.
    """
    assembler = TextAssembler(tokenizer)
    try:
        for token in ids:
            if cancel.is_set():
                return
            if token in stop_ids:
                break
            piece = assembler.add(token)
            if piece is not None:
                yield Chunk(text=piece[0], tokens=piece[1])
    finally:
        ids.close()
    rest = assembler.flush()
    if rest is not None and not cancel.is_set():
        yield Chunk(text=rest[0], tokens=rest[1])
