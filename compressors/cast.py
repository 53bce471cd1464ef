"""Dtype casts: `fp32` (the uncompressed baseline), `bf16` and `fp16` (half-width weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor


@dataclass(frozen=True)
class CastConfig:
    """No options: the method name says the dtype."""

    version: int = 1  # bump when the method's behaviour changes


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _make_apply(dtype: torch.dtype):
    def apply(model, config: CastConfig, context: CompressionContext) -> StepOutput:
        model.to(dtype)
        return StepOutput(model, {"dtype": str(dtype).removeprefix("torch.")})

    return apply


for _name, _dtype in _DTYPES.items():
    register_compressor(
        _name, CastConfig, _make_apply(_dtype), kind="cast",
        summary=f"cast all weights to {str(_dtype).removeprefix('torch.')}",
    )
