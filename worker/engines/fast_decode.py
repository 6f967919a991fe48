"""A gpt-fast-style decode path shared by the GPU engines: static KV cache, one-token step
captured as a CUDA graph.

HF `generate()` spends most of each token in Python and kernel launches (~26 tok/s for an
8 B model on an H100, against a memory-bandwidth ceiling near 176 tok/s). Here the prompt
lands in preallocated KV buffers (either the model's own forward, whose cache `start` copies
in, or `fast_decode_prefill.BucketPrefill` from prompt embeddings), and each further token
runs one replay of a graph captured at load: no Python per layer, no allocation, no
recompilation per prompt length.

Only Llama-shaped decoders are taken: layers of transformers' llama, qwen2, qwen3 or mistral
classes without a sliding window, recognised by the layers themselves, not the config's
`model_type` (MiniCPM-o 4.5's LLM is transformers' Qwen3 with `model_type` 'minicpmo').
Anything else makes `find_decoder` return a reason, and the engines fall back to `generate()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from worker.engines.decoder_shape import DecoderParts, find_decoder
from worker.engines.fast_decode_params import SamplingParams, sample

__all__ = ["FastDecoder", "SamplingParams", "build_fast_decoder", "find_decoder", "sample"]

log = logging.getLogger(__name__)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _cache_layer(cache: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's (keys, values) from whichever cache type this transformers returns."""
    if hasattr(cache, "key_cache"):  # DynamicCache, transformers 4.x
        return cache.key_cache[index], cache.value_cache[index]
    if hasattr(cache, "layers"):  # DynamicCache, transformers 5.x
        return cache.layers[index].keys, cache.layers[index].values
    return cache[index][0], cache[index][1]  # legacy tuple of tuples


class FastDecoder:
    """Static-cache decoder over an existing model's weights (no copy of them).

    Use: `start(logits, past_key_values, length)` after the model's own prefill forward,
    then iterate `tokens(...)`. Not thread-safe: one stream at a time, as the engines run.
    """

    def __init__(
        self,
        parts: DecoderParts,
        max_len: int,
        use_graph: bool,
        compile_step: bool = False,
        sampling: SamplingParams | None = None,
    ) -> None:
        self.parts = parts
        self.max_len = max_len
        cfg = parts.config
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.layers = list(parts.base.layers)
        weight = parts.base.embed_tokens.weight
        self.device, self.dtype = weight.device, weight.dtype
        shape = (1, self.kv_heads, max_len, self.head_dim)
        self.k_cache = [
            torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.layers
        ]
        self.v_cache = [
            torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.layers
        ]
        self.tok = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self.pos = torch.zeros((1,), dtype=torch.long, device=self.device)
        self.logits = torch.zeros((1, int(cfg.vocab_size)), dtype=torch.float32, device=self.device)
        self.positions = torch.arange(max_len, device=self.device)
        positions = self.positions.view(1, -1)
        cos, sin = parts.base.rotary_emb(weight[:1].view(1, 1, -1), positions)
        self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)  # [max_len, head_dim]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_seconds = 0.0
        self.prefiller: Any = None  # a BucketPrefill where the engine has prompt embeddings
        self.steps = 0  # tokens decoded since load: shows which path a window took
        # Optional: let Inductor fuse the small ops (norms, RoPE, softmax) before capture.
        self._step_fn: Any = self._step
        self.compiled = compile_step
        if compile_step:
            self._step_fn = torch.compile(self._step, fullgraph=True, dynamic=False)
        if use_graph and self.device.type == "cuda":
            self._capture()
        self.sampled: Any = None  # a SampledStep for the engine's own sampling settings
        if sampling is not None:
            from worker.engines.fast_decode_sampled import SampledStep

            self.sampled = SampledStep(self, sampling)

    @property
    def mode(self) -> str:
        """How the step runs: 'cuda-graph' or 'eager' (static cache either way)."""
        if self.graph is None:
            return "eager"
        mode = "compiled+cuda-graph" if self.compiled else "cuda-graph"
        if self.sampled is not None and self.sampled.graph is not None:
            mode += ", sampling in graph"
        return mode

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        """Whether a prompt plus its answer fits the static cache."""
        return prompt_tokens + max_new_tokens <= self.max_len

    def _attend(
        self, index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        kc, vc = self.k_cache[index], self.v_cache[index]
        kc.index_copy_(2, self.pos, k)
        vc.index_copy_(2, self.pos, v)
        groups = self.heads // self.kv_heads
        # Query heads h = kv * groups + g share kv head `kv`, as HF's repeat_kv lays them out.
        qg = q.view(1, self.kv_heads, groups, self.head_dim)
        scores = torch.matmul(qg, kc.transpose(-1, -2)).float() * self.head_dim**-0.5
        scores = scores.masked_fill((self.positions > self.pos).view(1, 1, 1, -1), float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(self.dtype)
        return torch.matmul(probs, vc).view(1, 1, self.heads * self.head_dim)

    def _step(self) -> None:
        """One token at `self.pos`: reads `self.tok`, writes `self.logits` (graph-safe)."""
        base = self.parts.base
        x = base.embed_tokens(self.tok)
        cos = self.cos.index_select(0, self.pos).view(1, 1, 1, -1)
        sin = self.sin.index_select(0, self.pos).view(1, 1, 1, -1)
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(1, 1, self.heads, self.head_dim)
            k = attn.k_proj(h).view(1, 1, self.kv_heads, self.head_dim)
            v = attn.v_proj(h).view(1, 1, self.kv_heads, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3 normalises q and k per head
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            x = x + attn.o_proj(self._attend(index, q, k, v))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.logits.copy_(self.parts.lm_head(base.norm(x))[:, -1].float())

    def _capture(self) -> None:
        started = time.perf_counter()
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up: compile, cuBLAS handles, workspaces before capture
                self._step_fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step_fn()
        torch.cuda.synchronize()
        self.graph = graph
        self.capture_seconds = time.perf_counter() - started

    def run_step(self) -> None:
        """Advance one token (graph replay when captured)."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step_fn()

    @torch.inference_mode()
    def step(self, token: torch.Tensor, position: int) -> torch.Tensor:
        """Feed `token` at `position`; returns the next logits [1, vocab] (the decoder's own
        float32 buffer, overwritten by the next step: clone to keep)."""
        self.tok.copy_(token.view(1, 1))
        self.pos.fill_(position)
        self.run_step()
        self.steps += 1
        return self.logits

    @torch.inference_mode()
    def start(self, past_key_values: Any, length: int) -> None:
        """Copy a prefilled HF cache of `length` tokens into the static cache."""
        for index in range(len(self.layers)):
            keys, values = _cache_layer(past_key_values, index)
            self.k_cache[index][:, :, :length].copy_(keys[:, :, :length])
            self.v_cache[index][:, :, :length].copy_(values[:, :, :length])

    @torch.inference_mode()
    def tokens(
        self,
        first_logits: torch.Tensor,
        length: int,
        max_new_tokens: int,
        params: SamplingParams,
        stop_ids: frozenset[int],
    ) -> Iterator[int]:
        """Yield token ids after a prefill of `length` tokens; stops after a stop id.

        The caller may stop iterating at any token (cancellation): nothing needs undoing.
        """
        token = sample(first_logits.float(), params)
        if self.sampled is not None and self.sampled.params == params:
            yield from self.sampled.tokens(token, length, max_new_tokens, stop_ids)
            return
        position = length
        for produced in range(1, max_new_tokens + 1):
            value = int(token.item())
            yield value
            if value in stop_ids or produced == max_new_tokens or position >= self.max_len:
                return
            token = sample(self.step(token, position), params)
            position += 1


def build_fast_decoder(
    model: nn.Module,
    max_len: int,
    use_graph: bool,
    compile_step: bool = False,
    prefill_buckets: tuple[int, ...] = (),
    sampling: SamplingParams | None = None,
) -> FastDecoder | None:
    """A FastDecoder for `model`, or None (logged why) where the fast path cannot apply.

    Tries the compiled step first (when asked), then the plain captured step: a quantised
    linear layer whose kernel Inductor or graph capture refuses still gets what works.
    With `prefill_buckets`, also captures a prefill per bucket (`fast_decode_prefill`); with
    `sampling`, a step that samples on the device (`fast_decode_sampled`).
    """
    from worker.engines.fast_decode_prefill import BucketPrefill

    parts = find_decoder(model)
    if isinstance(parts, str):
        log.warning("fast decode off, generate() is used instead: %s", parts)
        return None
    attempts = [(use_graph, True), (use_graph, False), (False, False)] if compile_step else []
    attempts += [(use_graph, False), (False, False)]
    for graph, compiled in dict.fromkeys(attempts):
        try:
            with torch.inference_mode():
                decoder = FastDecoder(parts, max_len, graph, compiled, sampling)
                if prefill_buckets:
                    decoder.prefiller = BucketPrefill(decoder, prefill_buckets, graph)
                return decoder
        except Exception as exc:  # noqa: BLE001 (any failure here only costs speed)
            log.warning("fast decode (graph=%s, compile=%s) failed: %s", graph, compiled, exc)
    log.warning("fast decode off, generate() is used instead")
    return None
