"""SmoothQuant (Xiao et al. 2023): move activation outliers into the weights before W8A8.

Per input channel j of the layers fed by one norm, s_j = max|X_j|^alpha / max|W_j|^(1-alpha);
the norm's weight is divided by s and the layers' input columns multiplied by it, so the model
computes the same function while its activations are flatter and quantize to int8 with less
error. It leaves a float model: follow it with a W8A8 quantizer, e.g.
`smoothquant:0.5+torchao-int8:activations=true` (torchao's int8 x int8 kernel, per-token
activation scales) or `smoothquant:0.5+dynamic-int8` (torch's, per-tensor activation scales).
Smoothing runs through llm-compressor's SmoothQuantModifier, with its mappings for the
architecture (the attention and MLP input norms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from compbench.compressors.calibration import Calibrated
from compbench.compressors.llmc import drop_compressed_save, oneshot_
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor


@dataclass(frozen=True)
class SmoothQuantConfig(Calibrated):
    """The migration strength alpha and the calibration set whose activation maxima it reads."""

    MAIN_OPTION: ClassVar[str] = "alpha"
    alpha: float = 0.5  # share of the outlier scale moved into the weights, in [0, 1] (paper: 0.5)
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


def apply(model: nn.Module, config: SmoothQuantConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    # the layers smoothing can rescale: those with a vector weight (norms), found by shape
    norms = {name: module.weight.detach().clone() for name, module in model.named_modules()
             if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.dim() == 1}
    oneshot_(model, [SmoothQuantModifier(smoothing_strength=config.alpha)], "smoothquant", context,
             calibration=config)
    drop_compressed_save(model)  # the result is a plain dense model: stock save_pretrained
    modules = dict(model.named_modules())
    smoothed = [name for name, before in norms.items() if not modules[name].weight.equal(before)]
    return StepOutput(model, {"smoothed_norms": len(smoothed)})


register_compressor(
    "smoothquant", SmoothQuantConfig, apply, kind="transform", needs_calibration=True,
    libraries=("llmcompressor",),
    summary="SmoothQuant: migrate activation outliers into the weights (then a W8A8 quantizer)",
)
