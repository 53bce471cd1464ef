"""torch dynamic int8 (`dynamic-int8`): int8 Linear weights, activations quantized on the fly, CPU only.

`torch.ao.quantization.quantize_dynamic` swaps each target `nn.Linear` for a
`DynamicQuantizedLinear` (int8 weights per output channel, activations quantized per tensor
at run time, fbgemm/onednn int8 GEMM); it is the CPU inference path the research used for
encoders. On SmolLM2 the per-tensor activation quantization hurts `mlp.down_proj`, whose
inputs (after SwiGLU) carry outliers: all layers cost +0.93 nats of loss on 1024 wikitext-2 test
tokens, all but down_proj +0.14. `ignore=down_proj` keeps those layers in float. The swapped
modules have no Hugging Face save format, so the result is not exportable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, target_layers
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class DynamicInt8Config(Targeted):
    """Weight granularity; `ignore=down_proj` keeps the layers whose name matches in float."""

    per_channel: bool = True  # one weight scale per output row (False: one per tensor)
    version: int = 1  # bump when the method's behaviour changes


def apply(model: nn.Module, config: DynamicInt8Config, context: CompressionContext) -> StepOutput:
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    parameter = next(model.parameters())
    if parameter.device.type != "cpu":
        raise CompbenchError("dynamic-int8 runs on the CPU only; use --device cpu")
    if parameter.dtype != torch.float32:
        raise CompbenchError(f"dynamic-int8 needs fp32 weights, the model is {parameter.dtype}; "
                             "load it with --dtype float32")
    qconfig = per_channel_dynamic_qconfig if config.per_channel else default_dynamic_qconfig
    names = list(target_layers(model, config, "dynamic-int8"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensors in favour of torchao
        quantize_dynamic(model, dict.fromkeys(names, qconfig), dtype=torch.qint8, inplace=True)
    swapped = sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    return StepOutput(model, {"quantized_layers": swapped})


register_compressor(
    "dynamic-int8", DynamicInt8Config, apply, kind="quantize", terminal=True, exportable=False,
    trainable=False,
    summary="torch dynamic int8 Linear layers (CPU only, activations quantized on the fly)",
)
