"""A quantized KV cache for generation (`--kv-cache int4`): transformers' QuantizedCache.

At long contexts the cache, not the weights, fills the memory of generation: keys and values
of every layer for every token, in the model's dtype. transformers' `QuantizedCache` keeps the
most recent `residual_length` tokens in float and the rest as 2/4/8-bit integers with a scale
and zero per group (per channel), re-quantizing as the float part fills. Its HQQ backend runs
on the CPU (the quanto backend needs optimum-quanto, not installed); the kind is part of a
run's identity, since it changes what the model generates.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compbench.errors import CompbenchError

KV_CACHE_BITS = {"int8": 8, "int4": 4, "int2": 2}


def check_kv_cache(kind: str | None) -> None:
    """A known kind or none."""
    if kind is not None and kind not in KV_CACHE_BITS:
        raise CompbenchError(f"--kv-cache {kind}: not a cache kind; use one of {', '.join(KV_CACHE_BITS)}")


def quantized_cache(model: nn.Module, kind: str):
    """A fresh quantized cache for one `generate` call of `model`."""
    from transformers import QuantizedCache

    return QuantizedCache(backend="hqq", config=model.config.get_text_config(decoder=True),
                          nbits=KV_CACHE_BITS[kind])


def _tensors(value: Any, seen: set[int]) -> int:
    """Bytes of every tensor reachable from a cache layer's attributes (each storage once)."""
    if isinstance(value, torch.Tensor):
        key = value.untyped_storage().data_ptr()
        if key in seen or value.numel() == 0:
            return 0
        seen.add(key)
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensors(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensors(v, seen) for v in value)
    return 0


def cache_bytes(cache) -> int:
    """Bytes a cache holds: float keys and values, quantized ones with their scales and zeros."""
    seen: set[int] = set()
    return sum(_tensors(vars(layer), seen) for layer in cache.layers)


def prefill_cache_mb(model: nn.Module, ids: torch.Tensor, kind: str | None) -> float:
    """MB of the cache after a prefill of `ids` (1 x tokens): dense, or quantized as `kind`."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config) if kind is None else quantized_cache(model, kind)
    with torch.no_grad():
        model(ids.to(next(model.parameters()).device), past_key_values=cache, use_cache=True)
    return cache_bytes(cache) / 2**20


RECORD_PROMPT_TOKENS = 2048  # the cache a run's results file records: after this long a prompt


def kv_cache_record(model: nn.Module, tokenizer, kind: str) -> dict:
    """What a run with a quantized cache records: its kind, and the cache's MB after a prefill of
    2048 tokens of WikiText-2 (or the model's whole context when shorter), dense and quantized."""
    from compbench.tasks.calibration import wikitext_prompt_ids

    tokens = min(RECORD_PROMPT_TOKENS, getattr(model.config, "max_position_embeddings", RECORD_PROMPT_TOKENS))
    prompt = torch.tensor([wikitext_prompt_ids(tokenizer, tokens)])
    dense, quantized = prefill_cache_mb(model, prompt, None), prefill_cache_mb(model, prompt, kind)
    return {"kind": kind, "bits": KV_CACHE_BITS[kind], "backend": "hqq", "prompt_tokens": tokens,
            "dense_mb": dense, "quantized_mb": quantized, "saved_fraction": 1 - quantized / dense}
