"""Which layers a method touches, selected by module type and name pattern, never by model name."""

from __future__ import annotations

import re

import torch
from torch import nn

from compbench.model_zoo.presets import DECODER_LINEARS


def target_pattern(model: nn.Module) -> str:
    """The compressible-module regex: the preset's (stored on the model on load), else decoder linears."""
    return getattr(model, "compbench_compressible", DECODER_LINEARS)


def linear_layers(model: nn.Module, pattern: str | None = None) -> dict[str, nn.Module]:
    """Linear-like modules (plain or bitsandbytes) whose qualified name matches `pattern`."""
    regex = re.compile(pattern or target_pattern(model))
    return {
        name: module
        for name, module in model.named_modules()
        if _is_linear(module) and regex.search(name)
    }


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return type(module).__name__ in ("Linear8bitLt", "Linear4bit")


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The weight as a float matrix, dequantized for bitsandbytes layers (for checks and stats)."""
    name = type(module).__name__
    if name == "Linear4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
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
