"""Is the uncompressed model credible? One perplexity check before anything is compared with it.

A broken baseline (a wrong conversion, a tokenizer that splits words into letters, a model
denied the BOS token it was trained with) makes every ratio and drop measured against it
meaningless, and the numbers alone do not say so. So before a causal LM is compressed, its
perplexity on the first 1024 tokens of the WikiText-2 test text (BOS first when its tokenizer
adds one) is compared with a generous bound for its size: 100 for models of 100M parameters or
more (the embedded models sit near 20 there), 1000 below that. The check is cached per source
model, dtype and device kind. A failed check is a loud warning in the run, a `baseline_check`
block in every results record of that model, a warning at the top of the report, and
`compbench gate` refuses to gate against it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass

from compbench.core.io import cache_dir, digest_of, write_json_atomic
from compbench.records.record import baseline_warning

CHECK_TOKENS = 1024
VERSION = 1  # bump when the check's text, length or bounds change


def perplexity_bound(params: int) -> float:
    """The highest first-chunk WikiText-2 perplexity a credible model of this size may have."""
    return 100.0 if params >= 100_000_000 else 1000.0


@dataclass(frozen=True)
class BaselineCheck:
    """The uncompressed model's first-chunk perplexity against the bound for its size."""

    passed: bool
    perplexity: float
    bound: float
    params: int
    tokens: int = CHECK_TOKENS
    bos: bool = False  # whether the text was preceded by the BOS token
    data: str = "wikitext-2-raw-v1 test, rows joined with blank lines"
    version: int = VERSION


def _text() -> str | None:
    """The start of the WikiText-2 test text, or None without a local copy of it."""
    from compbench.core.io import data_dir, read_jsonl

    root = data_dir()
    path = None if root is None else root / "wikitext-2-raw-v1" / "test.jsonl"
    if path is None or not path.is_file():
        return None
    rows = [row["text"] for row in read_jsonl(path)[:400]]
    return "\n\n".join(rows)


def _measure(model, tokenizer, text: str) -> BaselineCheck:
    import torch

    from compbench.model_zoo.tokenizers import expects_bos

    bos = expects_bos(tokenizer)
    ids = tokenizer(text, add_special_tokens=False).input_ids[:CHECK_TOKENS - int(bos)]
    ids = [tokenizer.bos_token_id] * int(bos) + ids
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device)).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:], device=device))
    params = sum(p.numel() for p in model.parameters())  # a tied embedding once
    perplexity = math.exp(float(nll))
    bound = perplexity_bound(params)
    return BaselineCheck(passed=perplexity <= bound, perplexity=perplexity, bound=bound,
                         params=params, tokens=len(ids), bos=bos)


def _cache_path(source: dict):
    return cache_dir() / "baseline-checks" / f"{digest_of({**source, 'check': VERSION})}.json"


def cached_check(source: dict) -> BaselineCheck | None:
    """The cached check of a source (its identity, dtype and device kind), when one was made."""
    try:
        return BaselineCheck(**json.loads(_cache_path(source).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def check_baseline(model, tokenizer, source: dict) -> BaselineCheck | None:
    """The check of an uncompressed causal LM (`source`: its identity, dtype and device kind),
    measured once and cached; None without a local WikiText-2 copy. A failed check is printed as
    a warning here, in whatever process loads the model."""
    check = cached_check(source)
    if check is None:
        text = _text()
        if text is None:
            return None
        check = _measure(model, tokenizer, text)
        write_json_atomic(_cache_path(source), asdict(check))
    warning = baseline_warning(asdict(check), source["source"]["preset"])
    if warning:
        print(f"compbench: WARNING: {warning}", file=sys.stderr)
    return check
