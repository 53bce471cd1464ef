"""Token ids of a task's loglikelihood requests, cached on disk per tokenizer.

A sweep evaluates one model's tokenizer under many recipes, each in a fresh worker process, so
lm-eval would tokenize every task again for every recipe. The cache key is the sha256 of the
tokenizer (its full serialized definition and special tokens), of how requests are framed (BOS,
the prefix token for empty contexts) and of every request's strings; the strings carry the task
config, its prompt and documents, so any change to them is another key. Entries live in
`<cache dir>/tokens/<key>.json`, written atomically; a damaged entry is tokenized again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

Pair = tuple[list[int], list[int]]


_DIGESTS: dict[int, tuple[object, str]] = {}  # id -> (the tokenizer, kept alive; its digest)


def tokenizer_digest(tokenizer) -> str:
    """sha256 of everything that decides the tokenizer's output (memoized per object)."""
    from compbench.core.io import digest_of

    if id(tokenizer) not in _DIGESTS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        definition = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
        _DIGESTS[id(tokenizer)] = (tokenizer, digest_of({
            "class": type(tokenizer).__name__, "definition": definition,
            "special": tokenizer.special_tokens_map,
            "add_bos": getattr(tokenizer, "add_bos_token", None)}))
    return _DIGESTS[id(tokenizer)][1]


def cache_path(lm, pairs: Sequence[tuple[str, str]]) -> Path:
    from compbench.core.io import cache_dir, digest_of

    key = digest_of({"tokenizer": tokenizer_digest(lm.tokenizer), "add_bos": lm.add_bos_token,
                     "prefix_token_id": lm.prefix_token_id, "pairs": list(pairs)})
    return cache_dir() / "tokens" / f"{key}.json"


def cached_encodings(lm, pairs: Sequence[tuple[str, str]], encode: Callable[[], list[Pair]]) -> list[Pair]:
    """The (context ids, continuation ids) of each pair: from the cache, else from `encode()`,
    then stored."""
    from compbench.core.io import write_text_atomic

    path = cache_path(lm, pairs)
    try:
        stored = json.loads(path.read_text())
        if len(stored) == len(pairs):
            return [(context, continuation) for context, continuation in stored]
    except (OSError, ValueError, TypeError):
        pass
    encoded = encode()
    write_text_atomic(path, json.dumps(encoded, separators=(",", ":")))
    return encoded
