"""Prefill of prompt embeddings straight into a FastDecoder's static cache, as CUDA graphs.

HF's eager forward of a ~460-token prompt through 36 layers is bound by kernel launches on a
slow host (~50 ms on the H100 VM for ~10 ms of matrix work). Here the prompt is padded at the
end to one of a few fixed lengths (buckets) and each bucket's forward is captured once at
load, so a prefill is one graph replay and no prompt length ever triggers a capture or a
compile. Padding at the end is harmless: attention is causal, the logits are read at the last
real token, and the padded positions of the cache are masked until decoding overwrites them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from worker.engines.fast_decode import FastDecoder, _rotate_half

DEFAULT_BUCKETS = (128, 256, 384, 512, 768, 1024, 1536, 2048)


class BucketPrefill:
    """`prefill(embeds)` -> first logits; the decoder's caches then hold the prompt."""

    def __init__(self, decoder: FastDecoder, buckets: Sequence[int], use_graph: bool) -> None:
        self.d = decoder
        sizes = sorted({b for b in buckets if b < decoder.max_len} | {decoder.max_len})
        self.buckets = sizes
        hidden = decoder.parts.base.embed_tokens.weight.shape[1]
        self.inputs = torch.zeros(
            (1, sizes[-1], hidden), device=decoder.device, dtype=decoder.dtype
        )
        self.last = torch.zeros((1,), dtype=torch.long, device=decoder.device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.capture_seconds = 0.0
        if use_graph and decoder.device.type == "cuda":
            self._capture_all()

    def _forward(self, n: int) -> None:
        """Prompt positions 0..n-1 from `self.inputs`: fills the caches and the decoder's logits."""
        d = self.d
        x = self.inputs[:, :n]
        cos = d.cos[:n].view(1, 1, n, -1)
        sin = d.sin[:n].view(1, 1, n, -1)
        for index, layer in enumerate(d.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(1, n, d.heads, d.head_dim)
            k = attn.k_proj(h).view(1, n, d.kv_heads, d.head_dim)
            v = attn.v_proj(h).view(1, n, d.kv_heads, d.head_dim)
            if hasattr(attn, "q_norm"):
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            d.k_cache[index][:, :, :n].copy_(k)
            d.v_cache[index][:, :, :n].copy_(v)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(1, n, d.heads * d.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        last = x.index_select(1, self.last)
        d.logits.copy_(d.parts.lm_head(d.parts.base.norm(last))[:, -1].float())

    def _capture_all(self) -> None:
        started = time.perf_counter()
        pool = torch.cuda.graph_pool_handle()  # buckets never run at once: one memory pool
        for n in self.buckets:
            stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward(n)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._forward(n)
            self.graphs[n] = graph
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started

    def bucket(self, length: int) -> int:
        """The padded length a prompt of `length` tokens runs at."""
        return next(b for b in self.buckets if b >= length)

    @torch.inference_mode()
    def prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """Prefill embeddings [1, L, hidden] (L <= max_len); returns float logits [1, vocab]."""
        length = int(embeds.shape[1])
        n = self.bucket(length)
        self.inputs[:, :length].copy_(embeds)
        self.inputs[:, length:n].zero_()
        self.last.fill_(length - 1)
        graph = self.graphs.get(n)
        if graph is not None:
            graph.replay()
        else:
            self._forward(n)
        return self.d.logits.clone()
