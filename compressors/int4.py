"""int4 weights in the CPU kernel's packed layout: `int4` (torchao's groupwise int4 weight-only
quantization) and the repacking of GPTQ / RTN 4-bit results into the same layout.

Batch-1 decoding on a CPU reads every weight once per token, so it runs as fast as the weights
are small, provided the matmul reads them packed. torch's `_weight_int4pack_mm_for_cpu` does:
4-bit integers in a tinygemm tile layout, one scale and one float zero per group of 32, 64 or
128 input columns, dequantized inside the kernel. torchao 0.18 reaches that kernel only through
its prototype `PrototypeInt4WeightOnlyConfig` / `Int4OpaqueTensor` (its core int4 layouts are
CUDA kernels), so `int4` uses that config with `quantize_`, and the GPTQ bridge builds the same
tensor from GPTQ's integers: tinygemm dequantizes a level q in 0..15 as (q - 8) * scale + zero,
which holds compressed-tensors' (q_signed - zero_point) * scale exactly with q = q_signed + 8 and
zero = -zero_point * scale. The kernel runs on the CPU only.

The kernel is fast with bfloat16 activations and slow with float32 ones (SmolLM2-135M, one token,
2 threads, here: fp32 dense 56.9 ms, int4 with fp32 activations 132 ms, bf16 dense 39.4 ms, int4
with bf16 activations 23.5 ms a forward; a 2048-token prefill with fp32 activations took 191 s
against 5 s dense), so both paths cast the model to bfloat16 first: scales, zeros and every
float layer are bfloat16, and the stats say so (`compute_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from compbench.compressors.cpu_kernels import COMPUTE_DTYPE, INT8_KERNEL, check_on_cpu, int8_head_
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, target_layers
from compbench.compressors.torchao import quiet_torchao_import
from compbench.core.tensors import packed_levels
from compbench.errors import CompbenchError

GROUP_SIZES = (32, 64, 128)  # the kernel's group sizes
KERNEL = "aten._weight_int4pack_mm_for_cpu"


@dataclass(frozen=True)
class Int4Config(Targeted):
    """4-bit weights, asymmetric, one scale and zero per `group_size` input columns."""

    MAIN_OPTION: ClassVar[str] = "group_size"
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("head",)  # added later: old keys stay
    group_size: int = 64  # input columns sharing a scale and zero: 32, 64 or 128
    head: bool = False  # the output head on the int8 kernel (untied; the embedding stays float)
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if self.group_size not in GROUP_SIZES:
            raise ValueError(f"group_size must be one of {', '.join(map(str, GROUP_SIZES))} (the "
                             f"CPU int4 kernel's), got {self.group_size}")


def check_kernel_fits(model: nn.Module, layers: dict[str, nn.Module], group_size: int, method: str) -> None:
    """The kernel's constraints, checked before anything is changed: a CPU model, and every
    layer's input width a multiple of the group size (torchao would skip such a layer without
    a word, leaving it in float)."""
    check_on_cpu(model, method, KERNEL, "for 4-bit on a GPU use rtn:4, gptq:4 or nf4")
    for name, module in layers.items():
        if module.in_features % group_size:
            fits = [g for g in GROUP_SIZES if module.in_features % g == 0]
            hint = f"group_size={fits[-1]} fits every width" if fits and all(
                m.in_features % fits[-1] == 0 for m in layers.values()) else "leave it out with ignore="
            raise CompbenchError(f"{method}: {name} has {module.in_features} input columns, not a "
                                 f"multiple of group_size={group_size}, so the int4 kernel cannot "
                                 f"hold it; {hint}")


def apply_int4(model: nn.Module, config: Int4Config, context: CompressionContext) -> StepOutput:
    with quiet_torchao_import():
        from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig
        from torchao.quantization import quantize_

    layers = target_layers(model, config, "int4")
    check_kernel_fits(model, layers, config.group_size, "int4")
    head = int8_head_(model) if config.head else None  # from the float weight, before the cast
    model.to(COMPUTE_DTYPE)
    chosen = {id(module) for module in layers.values()}
    quantize_(model, PrototypeInt4WeightOnlyConfig(group_size=config.group_size, set_inductor_config=False),
              filter_fn=lambda module, _name: id(module) in chosen)
    return StepOutput(model, {**_stats(layers), **({"head_kernel": INT8_KERNEL} if head else {})})


def repack_int4_(model: nn.Module, layers: dict[str, nn.Module], group_size: int) -> dict:
    """Replace each compressed-tensors 4-bit Linear (GPTQ / RTN, packed) by a Linear whose weight
    is the same integers, scales and zero points in the int4 kernel's layout (no re-rounding).
    The caller has checked the kernel fits (`check_kernel_fits`) before quantizing."""
    with quiet_torchao_import():
        from torchao.prototype.quantization.int4 import Int4OpaqueTensor
        from torchao.quantization.utils import pack_tinygemm_scales_and_zeros
    model.to(COMPUTE_DTYPE)
    repacked = {}
    for name, module in layers.items():
        levels, scale, zero_point = packed_levels(module)
        rows, columns = levels.shape
        scale = scale.float().reshape(rows, columns // group_size)
        zero = (torch.zeros_like(scale) if zero_point is None
                else -zero_point.float().reshape(scale.shape) * scale)
        unsigned = (levels.to(torch.int32) + 8).contiguous()  # 0..15, as tinygemm stores them
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, 1)
        scale_and_zero = pack_tinygemm_scales_and_zeros(scale.to(COMPUTE_DTYPE), zero.to(COMPUTE_DTYPE),
                                                        COMPUTE_DTYPE)
        weight = Int4OpaqueTensor(packed, scale_and_zero,
                                  [1, group_size], torch.Size((rows, columns)))
        linear = nn.Linear(columns, rows, bias=module.bias is not None, device="meta")
        linear.weight = nn.Parameter(weight, requires_grad=False)
        if module.bias is not None:
            linear.bias = nn.Parameter(module.bias.detach(), requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, linear)
        repacked[name] = linear
    _drop_compressed_state(model)
    return _stats(repacked)


def _drop_compressed_state(model: nn.Module) -> None:
    """The model no longer holds compressed-tensors layers: drop their config (it would make
    `save_pretrained` write a checkpoint of layers that are not there)."""
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.__dict__.pop("save_pretrained", None)


def _stats(layers: dict[str, nn.Module]) -> dict:
    weights = [module.weight for module in layers.values()]
    packed_bytes = sum(t.numel() * t.element_size() for w in weights for t in (w.qdata, w.scale_and_zero))
    fp16_bytes = sum(w.shape[0] * w.shape[1] * 2 for w in weights)
    return {"quantized_layers": len(layers), "kernel": KERNEL, "compute_dtype": str(COMPUTE_DTYPE),
            "quantized_linear_bytes": packed_bytes,
            "fp16_linear_bytes": fp16_bytes, "linear_bytes_vs_fp16": packed_bytes / fp16_bytes}


register_compressor(
    "int4", Int4Config, apply_int4, kind="quantize", terminal=True, trainable=False, exportable=False,
    libraries=("torchao",),
    summary="torchao int4 weights (asymmetric, groups of 32/64/128) run by the CPU int4 kernel",
)
