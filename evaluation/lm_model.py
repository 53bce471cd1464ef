"""The lm-eval model `compressed`: a thin lm-eval adapter over an `Artifact`.

    lm_eval --model compressed --model_args pretrained=smollm2-135m,recipe=nf4 --tasks …

From `--model_args` it builds the artifact (`artifacts/build.py`: preset + recipe); from
Python it takes one (`CompressedLM(artifact=…)`). It subclasses lm-eval's `HFLM` (as lm-eval's
own `SteeredModel` does) and hands it the compressed in-memory model, so every HFLM feature
(batching, rolling loglikelihood, generation) applies unchanged; multiple-choice requests that
share a context are scored from one pass over it (`evaluation/shared_context.py`;
`shared_context=false` turns that off); and it serves `wikitext2_chunked`'s token-id request
(`loglikelihood_token_chunk`, tasks/chunked.py).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from compbench.artifacts.build import Artifact, build
from compbench.compressors.llmc import decompress_for_inference
from compbench.errors import CompbenchError
from compbench.evaluation.generation import FirstTokenClock, GenerationLog
from compbench.evaluation.kv_cache import check_kv_cache, quantized_cache

# HFLM's own arguments that it still honours when handed a model object; the rest (revision,
# dtype, peft, parallelize, …) it would silently ignore, so `compressed` takes them itself
# (device, dtype, revision, peft) or refuses them with one line.
HFLM_ARGS = ("truncation", "logits_cache", "softmax_dtype", "mixed_precision_dtype",
             "max_batch_size", "add_bos_token", "prefix_token_id", "think_end_token",
             "enable_thinking", "chat_template_args")


def check_evaluable(preset) -> None:
    """`compressed` scores causal LMs (loglikelihood of continuations); an encoder would give
    numbers with no meaning, so it is refused, with the way to score it instead."""
    if preset.task_head == "causal-lm":
        return
    if preset.task_head == "sequence-classification":
        raise CompbenchError(f"'{preset.name}' is a sequence classifier: lm-eval scores language "
                             f"models; score it with `compbench eval --model {preset.source} --tasks "
                             "sst2` (a classification dataset's held-out rows)")
    raise CompbenchError(f"'{preset.name}' is a {preset.task_head} model: lm-eval gives no valid "
                         "numbers for it; train a classifier on it (compbench finetune --model "
                         f"{preset.name} --dataset sst2), export that merged (compbench export "
                         "--adapter DIR --merge OUT) and score OUT with compbench eval")


@functools.cache
def _chat_templates(preset) -> str | dict | None:
    """The preset's tokenizer's chat template(s), read once per process: a sweep plans every
    recipe of a model against the same tokenizer."""
    from transformers import AutoTokenizer

    from compbench.model_zoo.sources import resolve_source

    return AutoTokenizer.from_pretrained(resolve_source(preset), revision=preset.revision).chat_template


def check_chat_template(preset, template: bool | str) -> None:
    """A requested chat template must be the model's own: lm-eval would otherwise fall back to
    no template or a default one and score prompts the run's settings do not describe. `True`
    asks for the tokenizer's template; a name, for one of its named templates."""
    if not template:
        return
    templates = _chat_templates(preset)
    if not templates:
        raise CompbenchError(f"'{preset.name}' has no chat template (its tokenizer defines none), "
                             "so --apply-chat-template cannot format its prompts; evaluate it "
                             "without a template, or choose an instruct model that has one")
    if isinstance(template, str):
        names = sorted(templates) if isinstance(templates, dict) else []
        if template not in names:
            raise CompbenchError(f"'{preset.name}' has no chat template named '{template}' "
                                 f"(named templates: {', '.join(names) or 'none'}; "
                                 "--apply-chat-template without a name uses its default)")


def _passed_model_notices(record: logging.LogRecord) -> bool:
    """Drops HFLM's generic notice about being handed a model object ("arguments may be
    ignored"): `compressed` does that by design, and no argument is ignored, since every one
    is either honoured or refused (see `model_arg_names`)."""
    return not str(record.msg).startswith(("`pretrained` model kwarg is not of type `str`",
                                           "Passed an already-initialized model"))


@register_model("compressed")
class CompressedLM(HFLM):
    """An HFLM over a preset compressed by a recipe (see `compbench methods`), with a LoRA
    adapter from `compbench finetune` on it (`peft=DIR`), or over an artifact."""

    def __init__(
        self,
        pretrained: str = "smollm2-135m",
        recipe: str = "fp32",
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        batch_size: int | str = 1,
        data_dir: str | None = None,
        revision: str | None = None,
        peft: str | None = None,
        shared_context: bool | str = True,
        kv_cache: str | None = None,
        artifact: Artifact | None = None,
        **kwargs: Any,
    ) -> None:
        if data_dir:
            from compbench.core.io import set_data_dir

            set_data_dir(data_dir)
        if artifact is None:
            preset = _preset(str(pretrained), revision)
            check_evaluable(preset)
            adapter = None
            if peft:
                from compbench.artifacts.adapter import check_causal, read_adapter

                adapter = read_adapter(peft, flag="peft")
                check_causal(adapter)
            artifact = build(preset, str(recipe), device=device, dtype=dtype)
            if adapter is not None:
                from compbench.artifacts.adapter import check_base, with_adapter

                check_base(adapter, artifact.identity)
                artifact = with_adapter(artifact, adapter)
        check_evaluable(artifact.preset)
        check_kv_cache(kv_cache)
        decompress_for_inference(artifact.model)  # packed compressed-tensors: the float model it holds
        self.kv_cache = kv_cache  # generate with a quantized cache of this kind (kv_cache.py)
        self.artifact = artifact
        self.batch_sizes_used: list[int] = []  # what `batch_size=auto` chose, in order
        self.generation_log = GenerationLog()  # every generate call, timed
        self.shared_context = str(shared_context).lower() not in ("false", "0", "no")
        self.preset, self.recipe = artifact.preset, artifact.recipe
        hf_log = logging.getLogger("lm_eval.models.huggingface")
        hf_log.addFilter(_passed_model_notices)
        try:
            super().__init__(
                pretrained=artifact.model,
                tokenizer=artifact.tokenizer,
                backend="causal" if self.preset.task_head == "causal-lm" else "default",
                max_length=int(max_length or self.preset.max_length),
                batch_size=batch_size,
                device=artifact.device,
                **kwargs,
            )
        finally:
            hf_log.removeFilter(_passed_model_notices)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """HFLM's loglikelihood, with the requests' token ids from the tokenization cache
        (`evaluation/token_cache.py`) when this tokenizer has seen these requests before."""
        from compbench.evaluation.token_cache import cached_encodings

        if self.enable_thinking:  # HFLM refuses it for loglikelihood tasks; let it say so
            return super().loglikelihood(requests, disable_tqdm)
        pairs = [tuple(request.args) for request in requests]
        encoded = cached_encodings(self, pairs, lambda: [self._encode(*pair) for pair in pairs])
        tokenized = [(pair, context, continuation)
                     for pair, (context, continuation) in zip(pairs, encoded, strict=True)]
        return self._loglikelihood_tokens(tokenized, disable_tqdm=disable_tqdm)

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """HFLM's batched greedy generation (left-padded prompts, KV cache, stop sequences),
        timed to its first new token and to its end (`evaluation/generation.py`)."""
        clock = FirstTokenClock()
        if self.kv_cache:  # a fresh cache per call: generate fills it
            generation_kwargs["past_key_values"] = quantized_cache(self.model, self.kv_cache)
        output = super()._model_generate(context, max_length, stop, streamer=clock, **generation_kwargs)
        self.generation_log.add(rows=context.shape[0], prompt_tokens=context.shape[1],
                                steps=output.shape[1] - context.shape[1], clock=clock)
        return output

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """HFLM's rolling perplexity; for a model that expects BOS at the start of every sequence
        (its tokenizer adds one), every window starts with BOS and holds up to max_length - 1 of
        the text's tokens, each scored once. HFLM would encode the BOS as text (scoring it after
        its own prefix BOS) and start later windows without one."""
        from compbench.model_zoo.tokenizers import expects_bos

        if not expects_bos(self.tokenizer):
            return super().loglikelihood_rolling(requests, disable_tqdm)
        bos, width = self.tokenizer.bos_token_id, self.max_length - 1
        windows, owners = [], []
        for index, request in enumerate(requests):
            tokens = self.tok_encode(request.args[0], add_special_tokens=False)
            for start in range(0, len(tokens), width):
                windows.append((None, [bos], tokens[start:start + width]))
                owners.append(index)
        # HFLM's own path: the windows share only the BOS, no context worth a shared pass
        scores = HFLM._loglikelihood_tokens(self, windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owners, scores, strict=True):
            totals[index] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def loglikelihood_token_chunk(self, requests, disable_tqdm: bool = False) -> list[tuple[float, int]]:
        """`wikitext2_chunked`'s request (tasks/chunked.py): for each chunk of token ids, the
        summed NLL of tokens 2..n given their prefix, and n - 1."""
        import torch
        from tqdm import tqdm

        scores = []
        for request in tqdm(requests, desc="Scoring token chunks", disable=disable_tqdm):
            ids = torch.tensor([request.args[0]], device=self.device)
            with torch.no_grad():
                logits = self._model_call(ids)
            logprobs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            targets = ids[0, 1:]
            nll = -logprobs.gather(1, targets.unsqueeze(1)).sum()
            scores.append((float(nll), int(targets.numel())))
        return scores

    def _encode(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's tokenization of one request (`TemplateLM.loglikelihood`, whose loop cannot be
        called for one pair): an empty context becomes the prefix token."""
        if context:
            return self._encode_pair(context, continuation)
        continuation_ids = self.tok_encode(continuation, add_special_tokens=False)
        if self.prefix_token_id != continuation_ids[0]:
            return [self.prefix_token_id], continuation_ids
        return continuation_ids[:1], continuation_ids[1:]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        """HFLM's scores, with the requests that share a context scored from one pass over it."""
        import torch
        from tqdm import tqdm

        from compbench.evaluation.shared_context import batches, rows_independent, score_shared, split_shared

        if not (self.shared_context and self.backend == "causal" and rows_independent(self.model)):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        groups, rest = split_shared(requests, self.max_length)
        results: list = [None] * len(requests)
        if rest:
            plain = super()._loglikelihood_tokens([requests[i] for i in rest], disable_tqdm, override_bs)
            for index, answer in zip(rest, plain, strict=True):
                results[index] = answer
        if not groups:  # rolling perplexity windows, each alone
            return results
        batch_size = override_bs or self.batch_size
        if batch_size == "auto":
            longest = max((i for g in groups for i in g),
                          key=lambda i: len(requests[i][1]) + len(requests[i][2]))
            batch_size = self._detect_batch_size([requests[longest]])
        progress = tqdm(total=len(groups), desc="Scoring shared contexts",
                        disable=disable_tqdm or self.rank != 0)
        for batch in batches(groups, requests, batch_size):
            with torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                enabled=self.mixed_precision_dtype is not None):
                scores = score_shared(self.model, [requests[g[0]][1] for g in batch],
                                      [[requests[i][2] for i in g] for g in batch],
                                      self.device, self.softmax_dtype)
            for group, group_scores in zip(batch, scores, strict=True):
                for index, answer in zip(group, group_scores, strict=True):
                    results[index] = answer
                    if requests[index][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
            progress.update(len(batch))
        progress.close()
        return results

    def _detect_batch_size(self, requests=None, pos: int = 0) -> int:
        """`batch_size=auto`: lm-eval's out-of-memory probe on a GPU; on a CPU, from what a row of
        the longest request costs (`evaluation/batch_size.py`). Each choice is kept for the record."""
        if self.device.type == "cuda":
            size = super()._detect_batch_size(requests, pos)
        else:
            from compbench.evaluation.batch_size import cpu_batch_size

            tokens = self.max_length
            if requests:
                _, context, continuation = requests[pos]
                tokens = min(len(context) + len(continuation), self.max_length)
            size = cpu_batch_size(self.model.config, tokens, self.model.dtype.itemsize,
                                  self.max_batch_size)
        self.batch_sizes_used.append(size)
        return size

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """Build from `--model_args` text (the recipe keeps its `:`/`=` text)."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """Build from parsed model args; these win over the CLI's defaults (e.g. `--device`),
        and the CLI's default `cuda` falls back to the CPU when no GPU is present."""
        args = dict(arg_dict)
        for key, value in (additional_config or {}).items():
            if value is not None and key not in args:
                args[key] = value
        if str(args.get("device", "")).startswith("cuda") and not _cuda_available():
            args.pop("device")
        if "recipe" in args:
            args["recipe"] = str(args["recipe"])
        known = model_arg_names()
        unknown = sorted(set(args) - known)
        if unknown:
            raise CompbenchError(
                f"bad --model_args for 'compressed': unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}")
        return cls(**args)


def model_arg_names() -> set[str]:
    """The `--model_args` keys `compressed` takes: its own and the HFLM arguments HFLM honours
    for a model object (HFLM would silently drop any other, e.g. a misspelt `recipe`, and
    evaluate fp32)."""
    import inspect

    own = {name for name, p in inspect.signature(CompressedLM.__init__).parameters.items()
           if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "artifact")}
    return own | set(HFLM_ARGS)


def _preset(name: str, revision: str | None):
    """The preset, at `revision` where one is given (hub models only)."""
    import dataclasses

    from compbench.model_zoo.presets import get_preset

    preset = get_preset(name)
    if revision is None:
        return preset
    if preset.source.startswith(("embedded:", "gguf:")) or Path(preset.source).is_dir():
        kind = {"embedded": "an embedded model", "gguf": "a GGUF file"}.get(
            preset.source.partition(":")[0], "a local folder")
        raise CompbenchError(f"bad --model_args for 'compressed': revision={revision} applies to "
                             f"hub models; '{name}' is {kind}")
    return dataclasses.replace(preset, revision=revision)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
