"""HQQ (Badri & Shaji 2023): half-quadratic quantization, no calibration data.

For each group of weights, HQQ picks the zero point (and scale) that minimize an lp-norm
(p < 1) of the rounding error by half-quadratic splitting: a few closed-form iterations per
layer, so a layer takes milliseconds and nothing is run through the model. The error norm
tolerates a few large errors (outliers) in exchange for many small ones, which plain rounding
(RTN) does not. Runs through the `hqq` package (mobiusml): each target Linear becomes an
`HQQLinear` holding the packed b-bit integers with a float scale and zero per group along
the input dimension (axis=1, as GPTQ groups), dequantized on the fly in the forward.

Not exportable: transformers 5.17 refuses HQQ on the CPU and has not implemented quantizing
through `HqqConfig` ("QuantizationMethod.HQQ is not available yet"), so stock
`from_pretrained` cannot rebuild the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, check_groups_fit, target_layers
from compbench.core.measure import state_bytes

BITS = (2, 3, 4, 8)  # the widths hqq bit-packs (its 1, 1.58, 5 and 6 are not offered)


@dataclass(frozen=True)
class HQQConfig(Targeted):
    """Bits and group size; HQQ's own solver settings are its defaults."""

    MAIN_OPTION: ClassVar[str] = "bits"
    bits: int = 4  # bits per weight: 2, 3, 4 or 8
    group_size: int = 64  # input columns sharing a scale and zero; a multiple of 8
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if self.bits not in BITS:
            raise ValueError(f"bits must be one of {', '.join(map(str, BITS))} (hqq's packed "
                             f"widths), got {self.bits}")
        if self.group_size < 8 or self.group_size % 8:
            raise ValueError(f"group_size must be a positive multiple of 8, got {self.group_size}")


def apply(model: nn.Module, config: HQQConfig, context: CompressionContext) -> StepOutput:
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    layers = target_layers(model, config, "hqq")
    check_groups_fit(layers, config.group_size, "hqq")
    parameter = next(model.parameters())
    quant_config = BaseQuantizeConfig(nbits=config.bits, group_size=config.group_size, axis=1)
    fp16_bytes = sum(module.weight.numel() * 2 for module in layers.values())
    for name, module in layers.items():
        model.set_submodule(name, HQQLinear(module, quant_config, compute_dtype=parameter.dtype,
                                            device=str(parameter.device)))
    quantized = [model.get_submodule(name) for name in layers]
    packed_bytes = sum(state_bytes(module) for module in quantized)
    return StepOutput(model, {"quantized_layers": len(quantized), "quantized_linear_bytes": packed_bytes,
                              "fp16_linear_bytes": fp16_bytes,
                              "linear_bytes_vs_fp16": packed_bytes / fp16_bytes})


register_compressor(
    "hqq", HQQConfig, apply, kind="quantize", terminal=True, exportable=False, trainable=False,
    axes=("bits",), libraries=("hqq",),
    summary="HQQ: calibration-free 2/3/4/8-bit weights in groups (half-quadratic zero points)",
)
