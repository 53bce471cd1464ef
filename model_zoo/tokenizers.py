"""The tokenizer rule every model follows here: whether it expects BOS at the start of every
sequence (the perplexity protocols and the GGUF conversion read it)."""

from __future__ import annotations


def expects_bos(tokenizer) -> bool:
    """Whether the model expects BOS at the start of every sequence: its tokenizer adds one
    (Gemma, Llama-2); the perplexity protocols then start every window with it."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]
