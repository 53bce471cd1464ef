"""A GGUF file's tokenizer as llama.cpp runs it: special ids, the BOS rule, and SentencePiece BPE.

GGUF metadata says which tokens are BOS/EOS/padding/unknown and whether every sequence starts
with BOS (`tokenizer.ggml.add_bos_token`; llama.cpp's default where it is absent: yes for a
SentencePiece vocabulary, no for a byte-level BPE one). transformers' conversion mislabels
some of these (SmolLM2's EOS) and drops the BOS rule (Gemma: no BOS), so they are set here.

A `llama` (SentencePiece) vocabulary is pieces with scores that rank the merges: llama.cpp
splits the text at its user-defined pieces (newline, tab and space runs), then repeatedly
merges the adjacent pair whose joined piece scores highest, falling back to byte pieces for
characters the vocabulary lacks. transformers 5.17 builds a *Unigram* model from those scores
instead (`GGUFGemmaConverter`; transformers issue #41494), which splits "the cat" into "▁t",
"he", "▁c", "at", and a Gemma-3 GGUF then scores a perplexity in the thousands. So that
vocabulary is rebuilt here as the equivalent byte-fallback BPE: merges ordered by the joined
piece's score, user-defined pieces as added tokens matched first.
"""

from __future__ import annotations

from typing import Any

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6
ROLES = {"bos": "bos_token", "eos": "eos_token", "padding": "pad_token", "unknown": "unk_token"}


def field_value(reader, key: str, default: Any = None) -> Any:
    """A metadata value of a `gguf.GGUFReader` (a scalar, a string or a list), or `default`."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def token_strings(reader) -> list[str]:
    """The vocabulary's pieces by id (read from the raw parts: `contents()` takes seconds on a
    262k-piece vocabulary)."""
    field = reader.fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def special_ids(reader) -> dict[str, int]:
    """`{"bos": id, "eos": id, ...}`: the roles the metadata names."""
    return {role: int(value) for role in ROLES
            if (value := field_value(reader, f"tokenizer.ggml.{role}_token_id")) is not None}


def adds_bos(reader) -> bool:
    """Whether every sequence starts with BOS: the metadata's flag, else llama.cpp's default for
    the vocabulary type."""
    flag = field_value(reader, "tokenizer.ggml.add_bos_token")
    if flag is not None:
        return bool(flag)
    return field_value(reader, "tokenizer.ggml.model") == "llama"


# `tokenizer.ggml.pre` rules of byte-level vocabularies whose conversion by transformers was
# compared here with llama.cpp over all of WikiText-2 test. For `smollm` (SmolLM2) llama.cpp, like
# SmolLM's own tokenizer.json, first splits off every numeric character (\p{N}: digits, ½, ²)
# and transformers keeps only GPT-2's regex, so the ids can differ next to one: in 11 places of
# 304,978 WikiText-2 test tokens, none in the first 66,557. Kept as transformers converts it,
# since every published smollm2-135m number was measured with it; the README says so.
BYTE_LEVEL_RULES = ("smollm", "qwen2")


def check_vocabulary(reader) -> str | None:
    """Why this vocabulary cannot be rebuilt with the llama.cpp behaviour verified here, or None.
    A byte-level BPE (`gpt2`) is transformers' own conversion; a SentencePiece one (`llama`) is
    rebuilt below, as long as it adds no space prefix (llama.cpp then prefixes a space after
    every special piece; that rule is not reproduced or tested here)."""
    kind = field_value(reader, "tokenizer.ggml.model")
    if kind == "gpt2":
        pre = field_value(reader, "tokenizer.ggml.pre")
        if pre not in BYTE_LEVEL_RULES:
            return (f"its byte-level tokenizer splits text by llama.cpp's '{pre}' rule, which "
                    f"compbench has not checked (checked: {', '.join(BYTE_LEVEL_RULES)})")
        return None
    if kind != "llama":
        return f"its tokenizer type '{kind}' is not one compbench rebuilds (gpt2, llama)"
    if field_value(reader, "tokenizer.ggml.add_space_prefix", True):
        return "its SentencePiece tokenizer adds a space prefix, which compbench does not reproduce"
    return None


def spm_tokenizer(reader):
    """The `llama` (SentencePiece BPE) vocabulary as a transformers fast tokenizer."""
    import numpy as np
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    pieces = token_strings(reader)
    field = reader.fields["tokenizer.ggml.scores"]
    scores = np.concatenate([field.parts[i] for i in field.data]).tolist()
    field = reader.fields["tokenizer.ggml.token_type"]
    types = np.concatenate([field.parts[i] for i in field.data]).tolist()
    vocab = {piece: index for index, piece in enumerate(pieces)}
    mergeable = {piece for piece, kind in zip(pieces, types, strict=True) if kind == TOKEN_NORMAL}
    ranked = []
    for piece in mergeable:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-scores[vocab[piece]], vocab[piece], left, right))
    ranked.sort()  # the highest-scoring joined piece merges first (ties: the lower id)
    ids = special_ids(reader)
    specials = {pieces[i] for i in ids.values()}
    unk = pieces[ids["unknown"]] if "unknown" in ids else None
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[(left, right) for *_, left, right in ranked],
                                   unk_token=unk, fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")  # no space prefix: see `check_vocabulary`
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
    backend.add_tokens([AddedToken(piece, normalized=False, special=False)
                        for piece, kind in zip(pieces, types, strict=True) if kind == TOKEN_USER_DEFINED])
    backend.add_special_tokens([AddedToken(piece, normalized=False, special=True)
                                for piece, kind in zip(pieces, types, strict=True)
                                if kind == TOKEN_CONTROL or piece in specials])
    return PreTrainedTokenizerFast(tokenizer_object=backend, add_bos_token=adds_bos(reader),
                                   add_eos_token=False, **special_tokens(reader, pieces))


def special_tokens(reader, pieces: list[str]) -> dict[str, str]:
    """`{"bos_token": "<bos>", ...}` from the metadata's ids."""
    return {ROLES[role]: pieces[index] for role, index in special_ids(reader).items()}


def fix_converted(tokenizer, reader) -> None:
    """Set transformers' conversion of a byte-level vocabulary's special tokens and BOS rule to
    the metadata's."""
    from compbench.model_zoo.tokenizers import expects_bos

    for attr, token in special_tokens(reader, token_strings(reader)).items():
        setattr(tokenizer, attr, token)
    if expects_bos(tokenizer) != adds_bos(reader):
        tokenizer.add_bos_token = adds_bos(reader)
