"""Tensor and layer types: which modules are linear, which hold quantized weights, their float weight."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn


def is_tensor_subclass(tensor: torch.Tensor) -> bool:
    """A wrapper tensor subclass holding inner tensors (torchao's quantized weights)."""
    return hasattr(tensor, "__tensor_flatten__")


def is_int8_rows_linear(module: nn.Module) -> bool:
    """A Linear holding int8 rows and a scale each (`int8wo`, compressors/cpu_kernels.py); not
    bitsandbytes' Linear8bitLt, whose int8 weight keeps its scales elsewhere."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, nn.Linear) and isinstance(weight, torch.Tensor)
            and weight.dtype == torch.int8 and hasattr(module, "weight_scale"))


def is_int4_kernel_linear(module: nn.Module) -> bool:
    """A Linear whose weight is torchao's CPU int4 kernel tensor (`int4`, `format=int4-cpu`),
    told by its class name so that core never imports torchao."""
    weight = getattr(module, "weight", None)  # a compressed-tensors Linear has none
    return isinstance(module, nn.Linear) and type(weight).__name__ == "Int4OpaqueTensor"


def is_quantized_linear(module: nn.Module) -> bool:
    """A Linear whose weight is stored quantized: bitsandbytes, packed compressed-tensors, torch
    dynamic, hqq, a torchao tensor subclass, or an int8 weight with a scale per row (`int8wo`). A peft
    LoRA wrapper (same class name, its quantized layer in `base_layer`) is not one itself: the
    layer it wraps is."""
    if hasattr(module, "base_layer"):
        return False
    return (type(module).__name__ in ("Linear8bitLt", "Linear4bit", "HQQLinear")
            or hasattr(module, "weight_packed")
            or isinstance(module, torch.ao.nn.quantized.dynamic.Linear)
            or is_int8_rows_linear(module)
            or (isinstance(module, nn.Linear) and is_tensor_subclass(module.weight)))


def is_linear(module: nn.Module) -> bool:
    """A plain or quantized Linear layer."""
    return isinstance(module, nn.Linear) or is_quantized_linear(module)


def packed_levels(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A compressed-tensors `pack-quantized` Linear's (GPTQ / RTN) integer levels (int8, rows x
    columns), scales and zero points (None when symmetric; packed along rows when stored)."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    args = module.quantization_scheme.weights
    shape = torch.Size(module.weight_shape.tolist())
    levels = unpack_from_int32(module.weight_packed, args.num_bits, shape)
    zero_point = getattr(module, "weight_zero_point", None)
    if zero_point is not None and not args.symmetric and zero_point.dtype == torch.int32:
        zero_point = unpack_from_int32(zero_point, args.num_bits,
                                       torch.Size((shape[0], module.weight_scale.shape[-1])), packed_dim=0)
    return levels, module.weight_scale, zero_point


def _unpacked_weight(module: nn.Module) -> torch.Tensor:
    """Dequantize a compressed-tensors `pack-quantized` Linear (GPTQ / RTN) to its float weight."""
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    levels, scale, zero_point = packed_levels(module)
    return dequantize(levels, scale, zero_point, module.quantization_scheme.weights, dtype=torch.float32)


def _through_int4_kernel(module: nn.Module) -> torch.Tensor:
    """The float weight an int4-kernel Linear multiplies by: the identity matrix through the
    kernel (torchao 0.18 gives `Int4OpaqueTensor` no dequantize)."""
    eye = torch.eye(module.in_features, dtype=module.weight.dtype)
    with torch.no_grad():
        return torch.nn.functional.linear(eye, module.weight).T.float().contiguous()


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The weight as a float matrix, dequantized for quantized layers (for checks and stats)."""
    if hasattr(module, "weight_packed"):
        return _unpacked_weight(module)
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return module.weight().dequantize()
    name = type(module).__name__
    if name == "HQQLinear":
        return module.dequantize().float().reshape(module.out_features, module.in_features)
    if name == "Linear4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
    if is_int4_kernel_linear(module):
        return _through_int4_kernel(module)
    if is_tensor_subclass(module.weight):
        return module.weight.dequantize().float()
    if is_int8_rows_linear(module):
        return module.weight.float() * module.weight_scale.float().unsqueeze(1)
    if name == "Linear8bitLt":
        weight = module.weight
        scale = weight.SCB if getattr(weight, "SCB", None) is not None else module.state.SCB
        return weight.data.float() * scale.float().unsqueeze(1) / 127.0
    return module.weight.detach().float()


def linear_kernels(model: nn.Module) -> dict[str, int]:
    """How many linear layers run on each kind of matmul, by the kernel or library that runs it
    (recorded in a results file's `model.kernels` and in the speed table)."""
    kinds: Counter[str] = Counter()
    for module in model.modules():
        if not is_linear(module) or hasattr(module, "base_layer"):
            continue
        kinds[_kernel_of(module)] += 1
    return dict(kinds)


def _kernel_of(module: nn.Module) -> str:
    """The matmul a linear layer runs, named by its kernel or library."""
    weight = getattr(module, "weight", None)
    if is_int4_kernel_linear(module):
        return "int4 packed (aten._weight_int4pack_mm_for_cpu)"
    if is_int8_rows_linear(module):
        return "int8 packed (aten._weight_int8pack_mm)"
    if hasattr(module, "weight_packed"):
        return "compressed-tensors (dequantized each call)"
    name = type(module).__name__
    if name in ("Linear4bit", "Linear8bitLt"):
        return f"bitsandbytes {name}"
    if name == "HQQLinear":
        return "hqq (dequantized each call)"
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return "torch dynamic int8"
    if weight is not None and hasattr(weight, "__tensor_flatten__"):
        return f"torchao {type(weight).__name__}"
    if isinstance(weight, torch.Tensor):
        return f"dense {str(weight.dtype).removeprefix('torch.')}"
    return type(module).__name__
