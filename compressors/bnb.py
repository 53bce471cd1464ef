"""bitsandbytes weight quantization: `int8` (LLM.int8()), `nf4` and `fp4` (4-bit, optional double quant).

Quantization goes through transformers' own bitsandbytes integration (`from_pretrained` with a
`BitsAndBytesConfig`, see `hf_quantizer.py`), so the result is exactly what a Hugging Face user
gets, and it saves and reloads with stock `save_pretrained` / `from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from compbench.compressors.hf_quantizer import reload_quantized
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, linear_layers


@dataclass(frozen=True)
class Int8Config(Targeted):
    """LLM.int8(): per-row absmax int8 weights; activations above `threshold` stay in fp16."""

    threshold: float = 6.0  # outlier threshold of LLM.int8() mixed-precision decomposition
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")


@dataclass(frozen=True)
class NF4Config(Targeted):
    """4-bit NormalFloat weights in blocks of 64, one absmax per block."""

    QUANT_TYPE: ClassVar[str] = "nf4"
    double_quant: bool = False  # also quantize the per-block absmax scales (QLoRA's double quant)
    version: int = 1  # bump when the method's behaviour changes


@dataclass(frozen=True)
class FP4Config(NF4Config):
    """4-bit floating point weights in blocks of 64, one absmax per block."""

    QUANT_TYPE: ClassVar[str] = "fp4"


def _quantize(model, config: Targeted, method: str, options: dict) -> StepOutput:
    from transformers import BitsAndBytesConfig

    quantized = reload_quantized(
        model, config, method, lambda skip: BitsAndBytesConfig(**options, llm_int8_skip_modules=skip))
    return StepOutput(quantized, {"quantized_layers": len(linear_layers(quantized, config))})


def apply_int8(model, config: Int8Config, context: CompressionContext) -> StepOutput:
    return _quantize(model, config, "int8",
                     {"load_in_8bit": True, "llm_int8_threshold": config.threshold})


def apply_4bit(model, config: NF4Config, context: CompressionContext) -> StepOutput:
    return _quantize(model, config, config.QUANT_TYPE, {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": config.QUANT_TYPE,
        "bnb_4bit_use_double_quant": config.double_quant,
        "bnb_4bit_compute_dtype": model.dtype,
    })


def swap_to_int8_(model, names: list[str], threshold: float = Int8Config.threshold) -> None:
    """Replace the named float Linears by LLM.int8() `Linear8bitLt` layers, in place, built as
    transformers' loader builds them. For models whose other layers are already 4-bit (mixed
    4/8-bit): `BitsAndBytesConfig` holds one bit-width per model, so this mix is done by hand."""
    import bitsandbytes as bnb

    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                    bias=linear.bias is not None, has_fp16_weights=False,
                                    threshold=threshold)
        layer.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False,
                                         has_fp16_weights=False).to(linear.weight.device)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
        setattr(parent, child, layer)


def disable_cpu_bf16_repack_(model: nn.Module) -> int:
    """Turn off bitsandbytes' CPU bf16 inference path on every `Linear4bit`; returns how many.

    On CPUs with AVX512-BF16, the first no-grad forward through a `Linear4bit` repacks its
    weight into a bf16 inference layout, and from then on the backward through it yields zero
    gradients for an adapter above it (PyTorch only warns). Training turns the path off before
    any forward (an evaluation between steps would silently stop training), and so does every
    later load of a trained adapter (artifacts/adapter.py), so that it is scored through the
    compute path it was trained on. A plain 4-bit model keeps the library's default path."""
    count = 0
    for module in model.modules():
        if type(module).__name__ == "Linear4bit" and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


register_compressor("int8", Int8Config, apply_int8, kind="quantize", terminal=True,
                    libraries=("bitsandbytes",), summary="bitsandbytes LLM.int8() 8-bit weights")
register_compressor("nf4", NF4Config, apply_4bit, kind="quantize", terminal=True,
                    libraries=("bitsandbytes",),
                    summary="bitsandbytes 4-bit NormalFloat weights (double_quant optional)")
register_compressor("fp4", FP4Config, apply_4bit, kind="quantize", terminal=True,
                    libraries=("bitsandbytes",),
                    summary="bitsandbytes 4-bit float weights (double_quant optional)")
