"""The automatic batch size on a CPU: as many rows as fit in half of the memory now free.

lm-eval's `batch_size=auto` starts at `max_batch_size` (64) and halves until a trial pass raises
no out-of-memory error. That works on a GPU, whose allocator raises; a CPU's does not: the
kernel swaps, then kills the process (64 rows x 2048 tokens of float32 logits over SmolLM2's
49,152-token vocabulary alone are 25 GB, more than this machine has). So on a CPU the size is
computed from what one row of the longest request costs (`row_bytes`); on a GPU lm-eval's own
probe runs unchanged.
"""

from __future__ import annotations

MEMORY_SHARE = 0.5  # of the memory free when the size is chosen: the rest is headroom


def row_bytes(config, tokens: int, dtype_bytes: int, output_width: int | None = None) -> int:
    """Peak bytes one row of `tokens` tokens adds to a forward pass and its log-softmax: the
    logits in the model's dtype plus two float32 copies (the upcast and the log-softmax), the
    key/value cache, and the widest transient activations (the MLP's up, gate and product)."""
    text = getattr(config, "text_config", config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    width = output_width or text.vocab_size
    logits = width * (dtype_bytes + 8)
    cache = text.num_hidden_layers * 2 * kv_heads * head_dim * dtype_bytes
    activations = 4 * max(text.intermediate_size, text.hidden_size) * dtype_bytes
    return tokens * (logits + cache + activations)


def cpu_batch_size(config, tokens: int, dtype_bytes: int, max_batch_size: int,
                   available_bytes: int | None = None, output_width: int | None = None) -> int:
    """The most rows of `tokens` tokens (at least 1, at most `max_batch_size`) whose pass fits
    in `MEMORY_SHARE` of `available_bytes` (default: the memory free now)."""
    if available_bytes is None:
        import psutil

        available_bytes = psutil.virtual_memory().available
    per_row = row_bytes(config, max(tokens, 1), dtype_bytes, output_width)
    return max(1, min(max_batch_size, int(available_bytes * MEMORY_SHARE) // per_row))
