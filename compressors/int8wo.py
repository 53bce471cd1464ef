"""`int8wo`: int8 weights, one scale per output row, multiplied packed by torch's CPU int8
weight-only kernel (`aten._weight_int8pack_mm`) with bfloat16 activations.

Batch-1 decoding reads every weight once a token, so int8 weights (half of bf16's bytes) decode
faster only if the matmul reads them as int8. torchao quantizes them (`Int8Tensor.from_hp`, per
row, symmetric), but its weight-only `Int8Tensor` linear converts the whole int8 matrix to the
activation dtype on every call (torchao 0.18, `int8_tensor.py`), which made decoding slower than
fp32 here (0.74x, issue 29). No torchao config reaches `_weight_int8pack_mm`, so this module
holds torchao's integers and scales in a Linear whose forward calls that kernel: the one piece
written here, because the library has no such path.

The kernel wants the scales in the activations' dtype and is fast with bfloat16 ones (a 1536x576
matmul, one token, here: fp32 dense 49 us, int8 kernel with bf16 activations 19 us, with fp32
ones 320 us), so the model is cast to bfloat16 first, as `int4` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compbench.compressors.int4 import COMPUTE_DTYPE, check_on_cpu
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, target_layers
from compbench.compressors.torchao import quiet_torchao_import

KERNEL = "aten._weight_int8pack_mm"


@dataclass(frozen=True)
class Int8WeightOnlyConfig(Targeted):
    """int8 weights, symmetric, one scale per output row; activations stay bfloat16."""

    version: int = 1  # bump when the method's behaviour changes


class Int8PackedLinear(nn.Linear):
    """A Linear whose `weight` is int8 (rows x columns) with a bfloat16 `weight_scale` per row,
    multiplied by the int8 kernel without being converted."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("weight_scale", scale)
        if bias is not None:
            self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(self.weight_scale.dtype)
        out = torch.ops.aten._weight_int8pack_mm(rows, self.weight, self.weight_scale)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out + self.bias if self.bias is not None else out


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchao's symmetric per-row int8: the integers and one float32 scale per row."""
    with quiet_torchao_import():
        from torchao.quantization import Int8Tensor, PerRow

    quantized = Int8Tensor.from_hp(weight.float(), PerRow())
    return quantized.qdata, quantized.scale.reshape(-1)


def apply(model: nn.Module, config: Int8WeightOnlyConfig, context: CompressionContext) -> StepOutput:
    layers = target_layers(model, config, "int8wo")
    check_on_cpu(model, "int8wo", KERNEL, "for int8 weights on a GPU use int8 or torchao-int8")
    for name, module in layers.items():  # from the float weights, before the cast rounds them
        levels, scale = quantize_rows(module.weight.detach())
        bias = module.bias.detach() if module.bias is not None else None
        model.set_submodule(name, Int8PackedLinear(levels, scale, bias))
    model.to(COMPUTE_DTYPE)  # scales, biases and every float layer; the integers stay int8
    packed_bytes = sum(m.weight.numel() + m.weight.shape[0] * 2 for m in layers.values())
    fp16_bytes = sum(m.weight.numel() * 2 for m in layers.values())
    return StepOutput(model, {"quantized_layers": len(layers), "kernel": KERNEL,
                              "compute_dtype": str(COMPUTE_DTYPE), "quantized_linear_bytes": packed_bytes,
                              "fp16_linear_bytes": fp16_bytes,
                              "linear_bytes_vs_fp16": packed_bytes / fp16_bytes})


register_compressor(
    "int8wo", Int8WeightOnlyConfig, apply, kind="quantize", terminal=True, trainable=False,
    exportable=False, libraries=("torchao",),
    summary="int8 weights (per row, torchao's) run packed by the CPU int8 weight-only kernel",
)
