"""Which layers a method touches, selected by module type and name pattern, never by model name."""

from __future__ import annotations

import re

import torch
from torch import nn

from compbench.model_zoo.presets import DECODER_LINEARS


def target_pattern(model: nn.Module) -> str:
    """The compressible-module regex: the preset's (stored on the model on load), else decoder linears."""
    return getattr(model, "compbench_compressible", DECODER_LINEARS)


def exact_pattern(names) -> str:
    """A target pattern matching exactly these module names (to compress a chosen subset)."""
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def linear_layers(model: nn.Module, pattern: str | None = None) -> dict[str, nn.Module]:
    """Linear-like modules (plain or bitsandbytes) whose qualified name matches `pattern`."""
    regex = re.compile(pattern or target_pattern(model))
    return {
        name: module
        for name, module in model.named_modules()
        if _is_linear(module) and regex.search(name)
    }


def is_tensor_subclass(tensor: torch.Tensor) -> bool:
    """A wrapper tensor subclass holding inner tensors (torchao's quantized weights)."""
    return hasattr(tensor, "__tensor_flatten__")


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_quantized_linear(module)


def is_quantized_linear(module: nn.Module) -> bool:
    """A Linear whose weight is stored quantized: bitsandbytes, packed compressed-tensors, torch
    dynamic, or a torchao tensor subclass."""
    return (type(module).__name__ in ("Linear8bitLt", "Linear4bit")
            or hasattr(module, "weight_packed")
            or isinstance(module, torch.ao.nn.quantized.dynamic.Linear)
            or (isinstance(module, nn.Linear) and is_tensor_subclass(module.weight)))


def _unpacked_weight(module: nn.Module) -> torch.Tensor:
    """Dequantize a compressed-tensors `pack-quantized` Linear (GPTQ / RTN) to its float weight."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    args = module.quantization_scheme.weights
    shape = torch.Size(module.weight_shape.tolist())
    levels = unpack_from_int32(module.weight_packed, args.num_bits, shape)
    zero_point = getattr(module, "weight_zero_point", None)
    return dequantize(levels, module.weight_scale, zero_point, args, dtype=torch.float32)


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The weight as a float matrix, dequantized for quantized layers (for checks and stats)."""
    if hasattr(module, "weight_packed"):
        return _unpacked_weight(module)
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return module.weight().dequantize()
    name = type(module).__name__
    if name == "Linear4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
    if is_tensor_subclass(module.weight):
        return module.weight.dequantize().float()
    if name == "Linear8bitLt":
        weight = module.weight
        scale = weight.SCB if getattr(weight, "SCB", None) is not None else module.state.SCB
        return weight.data.float() * scale.float().unsqueeze(1) / 127.0
    return module.weight.detach().float()


def sparsity_of(model: nn.Module, pattern: str | None = None) -> float:
    """Fraction of exactly-zero weights over the target layers."""
    zeros = total = 0
    for module in linear_layers(model, pattern).values():
        weight = dense_weight(module)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0
