"""MiniCPM-o's text path: processor inputs -> embeddings -> token ids, fast where possible.

The model's own `get_vllm_embedding` merges the frames' vision tokens into the prompt
embeddings; the bucketed graph prefill (`fast_decode_prefill`) runs them through the weights
of its `llm` (Qwen3ForCausalLM) into the static cache; the static-cache decoder then
produces the answer. Where the fast decoder cannot apply (no decoder, or a prompt plus
answer longer than DECODE_MAX_LEN), `llm.generate()` streams instead. The model's `chat()`
is never called: its stream=True path falls through into TTS post-processing (docs/models.md).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import torch

from worker.engines.fast_decode import FastDecoder, SamplingParams
from worker.engines.fast_decode_stream import hf_generate_tokens

TERMINATORS = ("<|im_end|>", "<|endoftext|>", "<|tts_eos|>")
IMAGE_PLACEHOLDER = "<image>./</image>"


def build_prompt_text(tokenizer: Any, frames: int, prompt: str) -> str:
    """The chat-templated prompt for `frames` images and the instruction, as chat() builds it."""
    content = "\n".join([IMAGE_PLACEHOLDER] * frames + [prompt])
    messages = [{"role": "user", "content": content}]
    text: str = tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=True,
        use_tts_template=False,
        enable_thinking=False,
    )
    return text


def processor_inputs(processor: Any, text: str, images: list[Any], device: Any) -> Any:
    """Run MiniCPM-o's processor for one prompt (one image slice per frame, no audio)."""
    inputs = processor(
        [text],
        [images],
        [[]],
        [[]],
        max_slice_nums=1,
        use_image_id=False,
        return_tensors="pt",
        max_length=8192,
    ).to(device)
    inputs.pop("image_sizes", None)
    return inputs


@torch.inference_mode()
def embed(model: Any, inputs: Any) -> torch.Tensor:
    """Prompt embeddings with the frames' vision tokens merged in (the model's own code)."""
    embeds: torch.Tensor = model.get_vllm_embedding(inputs)[0]
    return embeds


def token_ids(
    model: Any,
    embeds: torch.Tensor,
    decoder: FastDecoder | None,
    max_new_tokens: int,
    params: SamplingParams,
    stop_ids: frozenset[int],
    cancel: threading.Event,
) -> Generator[int, None, None]:
    """Answer token ids for prompt embeddings [1, L, hidden]; the caller stops at will."""
    length = int(embeds.shape[1])
    if decoder is not None and decoder.fits(length, max_new_tokens):
        if decoder.prefiller is not None:  # one graph replay per prompt bucket
            first = decoder.prefiller.prefill(embeds)
        else:
            with torch.inference_mode():
                out = model.llm(inputs_embeds=embeds, use_cache=True, return_dict=True)
                decoder.start(out.past_key_values, length)
                first = out.logits[:, -1]
        yield from decoder.tokens(first, length, max_new_tokens, params, stop_ids)
        return
    greedy = params.temperature <= 0
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    kwargs: dict[str, Any] = {
        "inputs_embeds": embeds,
        "attention_mask": mask,
        "max_new_tokens": max_new_tokens,
        "do_sample": not greedy,
        "pad_token_id": 0,
        "eos_token_id": sorted(stop_ids) or None,
    }
    if not stop_ids:  # benchmarks: decode exactly max_new_tokens
        kwargs["min_new_tokens"] = max_new_tokens
    if not greedy:
        kwargs.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
    yield from hf_generate_tokens(model.llm.generate, kwargs, cancel)
