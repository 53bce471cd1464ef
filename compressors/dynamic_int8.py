"""torch dynamic int8 (`dynamic-int8`): int8 Linear weights, activations quantized on the fly, CPU only.

`torch.ao.quantization.quantize_dynamic` swaps each target `nn.Linear` for a
`DynamicQuantizedLinear` (per-tensor int8 weight, fbgemm/onednn int8 GEMM); it is the CPU
inference path the research used for encoders, and it works on decoders too. The swapped
modules have no Hugging Face save format, so the result is not exportable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import linear_layers
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class DynamicInt8Config:
    """No options: per-tensor symmetric int8 weights, as torch's dynamic quantization does."""

    version: int = 1  # bump when the method's behaviour changes


def apply(model: nn.Module, config: DynamicInt8Config, context: CompressionContext) -> StepOutput:
    from torch.ao.quantization import quantize_dynamic

    parameter = next(model.parameters())
    if parameter.device.type != "cpu":
        raise CompbenchError("dynamic-int8 runs on the CPU only; use --device cpu")
    if parameter.dtype != torch.float32:
        raise CompbenchError(f"dynamic-int8 needs fp32 weights, the model is {parameter.dtype}; "
                             "load it with --dtype float32")
    names = set(linear_layers(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensors in favour of torchao
        quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
    swapped = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    return StepOutput(model, {"quantized_layers": swapped})


register_compressor(
    "dynamic-int8", DynamicInt8Config, apply, kind="quantize", terminal=True, exportable=False,
    summary="torch dynamic int8 Linear layers (CPU only, activations quantized on the fly)",
)
