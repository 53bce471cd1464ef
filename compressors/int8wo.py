"""`int8wo`: int8 weights, one scale per output row (torchao's symmetric per-row quantization),
multiplied packed by torch's CPU int8 weight-only kernel (`aten._weight_int8pack_mm`) with
bfloat16 activations: batch-1 decoding reads every weight once a token, so int8 weights (half
of bf16's bytes) decode faster only if the matmul reads them as int8. Why the kernel is reached
through compbench's own Linear, and its timings: `cpu_kernels.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compbench.compressors.cpu_kernels import (
    COMPUTE_DTYPE,
    INT8_KERNEL,
    check_on_cpu,
    int8_head_,
    int8_linear,
)
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, target_layers
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class Int8WeightOnlyConfig(Targeted):
    """int8 weights, symmetric, one scale per output row; activations stay bfloat16."""

    head: bool = False  # the output head on the int8 kernel too (untied; the embedding stays float)
    version: int = 1  # bump when the method's behaviour changes


def apply(model: nn.Module, config: Int8WeightOnlyConfig, context: CompressionContext) -> StepOutput:
    layers = target_layers(model, config, "int8wo")
    check_on_cpu(model, "int8wo", INT8_KERNEL, "for int8 weights on a GPU use int8 or torchao-int8")
    for name, module in layers.items():  # from the float weights, before the cast rounds them
        model.set_submodule(name, int8_linear(module))
    head = int8_head_(model) if config.head else None
    model.to(COMPUTE_DTYPE)  # scales, biases and every float layer; the integers stay int8
    packed_bytes = sum(m.weight.numel() + m.weight.shape[0] * 2 for m in layers.values())
    fp16_bytes = sum(m.weight.numel() * 2 for m in layers.values())
    return StepOutput(model, {"quantized_layers": len(layers), "kernel": INT8_KERNEL,
                              **({"head_kernel": INT8_KERNEL} if head else {}),
                              "compute_dtype": str(COMPUTE_DTYPE), "quantized_linear_bytes": packed_bytes,
                              "fp16_linear_bytes": fp16_bytes,
                              "linear_bytes_vs_fp16": packed_bytes / fp16_bytes})


def exported_as(config: Int8WeightOnlyConfig, dtype: str) -> tuple[str, dict] | None:
    """`torchao-int8` quantizes the same float32 weights by the same torchao call
    (`Int8Tensor.from_hp`, per row), so its checkpoint holds int8wo's integers and scales in
    torchao's safetensors format (TorchAoConfig). With `head=true` there is none: torchao-int8
    keeps the head float. On weights loaded in another dtype, int8wo still quantizes in
    float32 and torchao-int8 in that dtype: their integers differ (measured: 5.4% of
    SmolLM2's in bfloat16), so that export is refused."""
    if dtype != "float32":
        raise CompbenchError(f"int8wo on {dtype} weights cannot be exported: its stock twin "
                             f"torchao-int8 quantizes them in {dtype}, int8wo in float32, and some "
                             "integers differ; export with --dtype float32")
    return None if config.head else ("torchao-int8", {"targets": config.targets, "ignore": config.ignore})


register_compressor(
    "int8wo", Int8WeightOnlyConfig, apply, kind="quantize", terminal=True, trainable=False,
    exportable=False, exported_as=exported_as, libraries=("torchao",),
    summary="int8 weights (per row, torchao's) run packed by the CPU int8 weight-only kernel",
)
