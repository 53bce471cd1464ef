"""The GPTQ / SparseGPT / Wanda perplexity protocol as an lm-eval task.

The test split is joined with "\\n\\n", tokenized once with the evaluated model's tokenizer,
and cut into non-overlapping chunks of `seqlen` tokens (the remainder dropped). Each chunk is
one document; the model sees the chunk and predicts its tokens 2..seqlen; perplexity is
exp(total NLL / predicted tokens), which for equal chunks is exp(mean per-chunk loss), the
number the pruning and quantization papers report. `--limit N` scores the first N chunks.
There, only the first chunk starts with BOS (when the tokenizer adds one). A model that expects
BOS at the start of every sequence (its tokenizer adds one: Gemma collapses without it) gets it
here at the start of every chunk, followed by seqlen - 1 text tokens, so the same number of
tokens is predicted; the results' protocol record says which was done.

lm-eval's requests are strings, and a string boundary cannot always reproduce a token boundary
(a chunk that starts with a whitespace token is re-split by lm-eval's context handling), so this
task sends the token ids themselves with its own request type, `loglikelihood_token_chunk`. A
request type is a method of the model class, and lm-eval's public hook for one is a registered
model: compbench's `compressed` implements it (evaluation/lm_model.py), for any preset, folder
or GGUF file (`recipe=fp32`: the uncompressed model). lm-eval's stock `hf` model does not, and
lm-eval offers no hook to add one to it, so this task runs under `--model compressed` only.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from compbench.errors import CompbenchError
from compbench.tasks.data import load_splits

REQUEST_TYPE = "loglikelihood_token_chunk"
DEFAULT_SEQLEN = 2048


def _tokenizer_source(metadata: dict) -> str:
    source = metadata.get("tokenizer") or metadata.get("pretrained")
    if not isinstance(source, str):
        raise CompbenchError(
            "wikitext2_chunked tokenizes with the evaluated model's tokenizer: pass it with "
            "--metadata '{\"pretrained\": \"MODEL\"}' (lm_eval adds it from --model_args)"
        )
    from compbench.model_zoo.presets import PRESETS, get_preset
    from compbench.model_zoo.sources import resolve_source

    local = source in PRESETS or source.lower().endswith(".gguf") or Path(source).is_dir()
    return resolve_source(get_preset(source)) if local else source  # else a hub id


def capped_seqlen(seqlen: int, context: int | None) -> int:
    """The chunk length: the requested `seqlen`, at most the model's context."""
    return min(seqlen, context or seqlen)


@lru_cache(maxsize=4)
def _chunks(text: str, tokenizer_source: str, seqlen: int) -> tuple[tuple[int, ...], ...]:
    from transformers import AutoConfig, AutoTokenizer

    from compbench.model_zoo.tokenizers import expects_bos

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    context = getattr(AutoConfig.from_pretrained(tokenizer_source), "max_position_embeddings", None)
    seqlen = capped_seqlen(seqlen, context)
    if expects_bos(tokenizer):
        ids, step = tokenizer(text, add_special_tokens=False).input_ids, seqlen - 1
        return tuple((tokenizer.bos_token_id, *ids[i * step:(i + 1) * step]) for i in range(len(ids) // step))
    ids = tokenizer(text).input_ids
    return tuple(tuple(ids[i * seqlen:(i + 1) * seqlen]) for i in range(len(ids) // seqlen))


def load_chunks(path: str, local_name: str, splits: list[str], name: str | None = None,
                fields: dict[str, str] | None = None, gold: dict | None = None,
                seqlen: int = DEFAULT_SEQLEN, **metadata):
    """`custom_dataset` hook: the split's rows joined, tokenized, cut into `seqlen` chunks."""
    import datasets

    rows = load_splits(path, local_name, splits, name=name, fields=fields, gold=gold)
    text = "\n\n".join(rows[splits[0]]["text"])
    chunks = _chunks(text, _tokenizer_source(metadata), int(seqlen))
    return datasets.DatasetDict({splits[0]: datasets.Dataset.from_dict(
        {"chunk": list(range(len(chunks))), "input_ids": [list(c) for c in chunks]})})


class ChunkedPerplexity(ConfigurableTask):
    """A ConfigurableTask whose one request per document is the chunk's token ids."""

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        # lm-eval hands the whole YAML over, including the `class` key that chose this class
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"},
                         **kwargs)

    def construct_requests(self, doc: dict, ctx, **kwargs) -> Instance:
        kwargs.pop("apply_chat_template", None)
        kwargs.pop("chat_template", None)
        return Instance(request_type=REQUEST_TYPE, doc=doc, arguments=(tuple(doc["input_ids"]),),
                        idx=0, **kwargs)


def chunk_results(doc, results) -> dict:
    """Per chunk: (summed NLL, predicted tokens), aggregated over all chunks."""
    (nll_and_count,) = results
    return {"perplexity": nll_and_count}


def perplexity(items) -> float:
    """exp(total NLL / total predicted tokens)."""
    items = list(items)
    return math.exp(sum(nll for nll, _ in items) / sum(count for _, count in items))
