"""Quantize through a transformers quantizer: save the model, reload it with a `quantization_config`.

This is how a Hugging Face user quantizes (`from_pretrained(..., quantization_config=...)`), so
the result is exactly theirs, and it saves and reloads with stock `save_pretrained` /
`from_pretrained`. A model changed in memory by an earlier step (pruned, resized) is written to
a temporary checkpoint first. Used by the bitsandbytes and torchao methods.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable

import torch
from torch import nn

from compbench.compressors.targets import Targeted, target_layers
from compbench.errors import CompbenchError


def skip_modules(model: nn.Module, targets: dict[str, nn.Module]) -> list[str]:
    """Linear modules outside the target set, kept unquantized (lm_head, task heads)."""
    return [name for name, module in model.named_modules()
            if name not in targets and type(module).__name__ == "Linear"]


def reload_quantized(model: nn.Module, selection: Targeted, method: str,
                     make_config: Callable[[list[str]], object]) -> nn.Module:
    """The model reloaded with `make_config(skip_modules)` as its quantization config, on its
    device and in its dtype: only the selected layers are quantized."""
    if getattr(model.config, "pruned_heads", None):
        raise CompbenchError(f"{method} reloads the model with from_pretrained, which cannot rebuild "
                             "the encoder heads removed by structured:heads= (transformers 5); "
                             "quantize it with dynamic-int8, or prune ffn= only")
    device = next(model.parameters()).device
    quantization_config = make_config(skip_modules(model, target_layers(model, selection, method)))
    logger = logging.getLogger("transformers")
    level = logger.level
    with tempfile.TemporaryDirectory(prefix="compbench-quantize-") as folder:
        model.save_pretrained(folder)
        logger.setLevel(logging.ERROR)  # the load report of a temporary checkpoint is noise here
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantized = type(model).from_pretrained(
                    folder, quantization_config=quantization_config, dtype=model.dtype,
                    device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"},
                )
        finally:
            logger.setLevel(level)
    quantized.eval()
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return quantized
