"""The lm-eval model `compressed`: a thin lm-eval adapter over an `Artifact`.

    lm_eval --model compressed --model_args pretrained=smollm2-135m,recipe=nf4 --tasks …

From `--model_args` it builds the artifact (`harness/artifact.py`: preset + recipe); from
Python it takes one (`CompressedLM(artifact=…)`). It subclasses lm-eval's `HFLM` (as lm-eval's
own `SteeredModel` does) and hands it the compressed in-memory model, so every HFLM feature
(batching, rolling loglikelihood, generation) applies unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from compbench.errors import CompbenchError
from compbench.harness.artifact import Artifact, build


def _passed_model_notices(record: logging.LogRecord) -> bool:
    """Drops HFLM's warnings about being handed a model object: `compressed` does that by
    design and reads every model arg itself, so "arguments may be ignored" would mislead."""
    return not str(record.msg).startswith(("`pretrained` model kwarg is not of type `str`",
                                           "Passed an already-initialized model"))


@register_model("compressed")
class CompressedLM(HFLM):
    """An HFLM over a preset compressed by a recipe (see `compbench methods`), or over an artifact."""

    def __init__(
        self,
        pretrained: str = "smollm2-135m",
        recipe: str = "fp32",
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        batch_size: int | str = 1,
        data_dir: str | None = None,
        artifact: Artifact | None = None,
        **kwargs: Any,
    ) -> None:
        if data_dir:
            from compbench.core.io import set_data_dir

            set_data_dir(data_dir)
        if artifact is None:
            artifact = build(str(pretrained), str(recipe), device=device, dtype=dtype)
        self.artifact = artifact
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
    """The `--model_args` keys `compressed` takes: its own and HFLM's, less those it sets itself
    (HFLM would silently drop an unknown key, e.g. a misspelt `recipe`, and evaluate fp32)."""
    import inspect

    def named(function) -> set[str]:
        return {name for name, p in inspect.signature(function).parameters.items()
                if p.kind is p.POSITIONAL_OR_KEYWORD and name != "self"}

    return (named(CompressedLM.__init__) | named(HFLM.__init__)) - {"tokenizer", "backend", "artifact"}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
