"""Independent references for a GGUF model, written from llama.cpp's own semantics: its
SentencePiece tokenizer and plain-torch Gemma-3 and Qwen2 forwards over gguf's dequantized tensors.
Neither uses transformers, so they check compbench's conversion rather than repeat it."""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

USER_DEFINED, BYTE = 4, 6


def spm_encode(pieces: list[str], scores: list[float], types: list[int], text: str) -> list[int]:
    """llama.cpp's SentencePiece tokenization (no BOS, no space prefix): the text is split at its
    user-defined pieces (longest first), each other fragment has its spaces written as "▁" and is
    merged pair by pair, always the adjacent pair whose joined piece scores highest (ties: the
    leftmost), and a symbol that is no piece is written as its bytes."""
    ids = {piece: index for index, piece in enumerate(pieces)}
    fragments: list[str | int] = [text]
    for piece in sorted((p for p, t in zip(pieces, types, strict=True) if t == USER_DEFINED), key=len,
                        reverse=True):
        split: list[str | int] = []
        for fragment in fragments:
            if isinstance(fragment, int):
                split.append(fragment)
                continue
            parts = fragment.split(piece)
            for i, part in enumerate(parts):
                split += [part] if part else []
                split += [ids[piece]] if i < len(parts) - 1 else []
        fragments = split
    out: list[int] = []
    for fragment in fragments:
        out += [fragment] if isinstance(fragment, int) else _merge(ids, scores, fragment.replace(" ", "▁"))
    return out


def _merge(ids: dict[str, int], scores: list[float], text: str) -> list[int]:
    symbols = list(text)
    nxt, prv = list(range(1, len(text))) + [-1], list(range(-1, len(text) - 1))
    queue: list = []
    merged_from: dict[str, tuple[str, str]] = {}

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        joined = symbols[left] + symbols[right]
        if joined in ids:
            heapq.heappush(queue, (-scores[ids[joined]], left, right, len(joined)))
            merged_from[joined] = (symbols[left], symbols[right])

    for i in range(1, len(symbols)):
        push(i - 1, i)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != size:
            continue
        symbols[left], symbols[right] = symbols[left] + symbols[right], ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prv[nxt[right]] = left
        push(prv[left], left)
        push(left, nxt[left])

    def emit(symbol: str, out: list[int]) -> None:
        if symbol in ids:
            out.append(ids[symbol])
        elif symbol in merged_from:
            emit(merged_from[symbol][0], out)
            emit(merged_from[symbol][1], out)
        else:
            out += [ids[f"<0x{byte:02X}>"] for byte in symbol.encode("utf-8")]

    out: list[int] = []
    i = 0
    while i != -1 and symbols:
        emit(symbols[i], out)
        i = nxt[i]
    return out


def gguf_tensors(reader) -> dict[str, torch.Tensor]:
    """Every tensor of the file, dequantized by gguf itself, as float32 torch tensors."""
    from gguf.quants import dequantize

    return {t.name: torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32))
            for t in reader.tensors}


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """llama.cpp's RMS norm: normalize, then multiply by the stored weight (Gemma's 1 + w)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """NEOX-style rotary embedding (rotate the two halves), positions 0..T-1."""
    dim = x.shape[-1]
    angles = torch.arange(x.shape[-2], dtype=torch.float64)[:, None] / base ** (
        torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    cos, sin = angles.cos().float(), angles.sin().float()
    first, second = x[..., :dim // 2], x[..., dim // 2:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], -1)


@torch.no_grad()
def gemma3_logits(w: dict[str, torch.Tensor], meta: dict, ids: list[int]) -> torch.Tensor:
    """Gemma-3 as llama.cpp's graph computes it: scaled embedding, per block pre/post RMS norms
    around attention and the GELU-gated MLP, per-head Q/K norms, RoPE with base 10,000 on the
    sliding-window layers (window `attention.sliding_window`) and `rope.freq_base` on every sixth
    (global) layer, queries scaled by 1/sqrt(head size), tied output."""
    heads, kv_heads = meta["attention.head_count"], meta["attention.head_count_kv"]
    size, eps = meta["attention.key_length"], meta["attention.layer_norm_rms_epsilon"]
    n = len(ids)
    pos = torch.arange(n)
    causal = pos[None, :] <= pos[:, None]
    local = causal & (pos[:, None] - pos[None, :] < meta["attention.sliding_window"])
    x = w["token_embd.weight"][torch.tensor(ids)] * math.sqrt(meta["embedding_length"])
    for layer in range(meta["block_count"]):
        p = f"blk.{layer}."
        is_global = (layer + 1) % 6 == 0
        h = _rms(x, w[p + "attn_norm.weight"], eps)
        q = _rms((h @ w[p + "attn_q.weight"].T).view(n, heads, size), w[p + "attn_q_norm.weight"], eps)
        k = _rms((h @ w[p + "attn_k.weight"].T).view(n, kv_heads, size), w[p + "attn_k_norm.weight"], eps)
        v = (h @ w[p + "attn_v.weight"].T).view(n, kv_heads, size).transpose(0, 1)
        base = meta["rope.freq_base"] if is_global else 10_000.0
        q, k = _rope(q.transpose(0, 1), base), _rope(k.transpose(0, 1), base)
        k, v = k.repeat_interleave(heads // kv_heads, 0), v.repeat_interleave(heads // kv_heads, 0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(size)
        scores = scores.masked_fill(~(causal if is_global else local), float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(0, 1).reshape(n, heads * size)
        x = x + _rms(attended @ w[p + "attn_output.weight"].T, w[p + "post_attention_norm.weight"], eps)
        h = _rms(x, w[p + "ffn_norm.weight"], eps)
        gate = torch.nn.functional.gelu(h @ w[p + "ffn_gate.weight"].T, approximate="tanh")
        mlp = (gate * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        x = x + _rms(mlp, w[p + "post_ffw_norm.weight"], eps)
    return _rms(x, w["output_norm.weight"], eps) @ w["token_embd.weight"].T


@torch.no_grad()
def qwen2_logits(w: dict[str, torch.Tensor], meta: dict, ids: list[int]) -> torch.Tensor:
    """Qwen2 as llama.cpp's graph computes it: per block an RMS norm, attention with biased
    Q/K/V projections, grouped KV heads and NeoX RoPE at base `rope.freq_base`, queries scaled
    by 1/sqrt(head size), then an RMS norm and the SiLU-gated MLP; untied output."""
    heads, kv_heads = meta["attention.head_count"], meta["attention.head_count_kv"]
    eps = meta["attention.layer_norm_rms_epsilon"]
    size = meta["embedding_length"] // heads
    n = len(ids)
    pos = torch.arange(n)
    causal = pos[None, :] <= pos[:, None]
    x = w["token_embd.weight"][torch.tensor(ids)]
    for layer in range(meta["block_count"]):
        p = f"blk.{layer}."
        h = _rms(x, w[p + "attn_norm.weight"], eps)
        q, k, v = ((h @ w[p + f"attn_{m}.weight"].T + w[p + f"attn_{m}.bias"]).view(n, -1, size)
                   .transpose(0, 1) for m in "qkv")
        q, k = _rope(q, meta["rope.freq_base"]), _rope(k, meta["rope.freq_base"])
        k, v = k.repeat_interleave(heads // kv_heads, 0), v.repeat_interleave(heads // kv_heads, 0)
        scores = ((q @ k.transpose(1, 2)) / math.sqrt(size)).masked_fill(~causal, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(0, 1).reshape(n, heads * size)
        x = x + attended @ w[p + "attn_output.weight"].T
        h = _rms(x, w[p + "ffn_norm.weight"], eps)
        mlp = torch.nn.functional.silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)
        x = x + mlp @ w[p + "ffn_down.weight"].T
    return _rms(x, w["output_norm.weight"], eps) @ w["output.weight"].T


def perplexity(logits: torch.Tensor, ids: list[int]) -> float:
    """exp(mean NLL of tokens 2..n) from a sequence's logits."""
    logprobs = torch.log_softmax(logits[:-1].double(), -1)
    return math.exp(-float(logprobs.gather(1, torch.tensor(ids[1:])[:, None]).mean()))
