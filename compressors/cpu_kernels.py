"""What the CPU kernel recipes (`int4`, `int8wo`) share: the activation dtype their kernels are
fast in, the refusal off the CPU, the int8 packed Linear, and the output head on the int8
kernel (`head=true`).

torch's CPU int8 weight-only kernel, `aten._weight_int8pack_mm`, multiplies int8 rows with one
scale each without converting them; no torchao config reaches it (torchao 0.18's weight-only
`Int8Tensor` linear converts the whole int8 matrix to the activation dtype on every call), so
`Int8PackedLinear` holds torchao's integers and scales and calls the kernel: the one piece
written here, because the library has no such path. The kernel wants its scales in the
activations' dtype and is fast with bfloat16 ones (a 1536x576 matmul, one token, here: fp32
dense 49 us, int8 kernel with bf16 activations 19 us, with fp32 ones 320 us), as the int4 one is.
"""

from __future__ import annotations

import torch
from torch import nn

from compbench.compressors.torchao import quiet_torchao_import
from compbench.errors import CompbenchError

COMPUTE_DTYPE = torch.bfloat16  # the kernels' fast activation dtype
INT8_KERNEL = "aten._weight_int8pack_mm"


def check_on_cpu(model: nn.Module, method: str, kernel: str, instead: str) -> None:
    """A CPU-only kernel refused, before anything is changed, for a model on another device,
    with the recipes to use there instead."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise CompbenchError(f"{method} runs the CPU kernel {kernel}; the model is on {device}: {instead}")


class Int8PackedLinear(nn.Linear):
    """A Linear whose `weight` is int8 (rows x columns) with a `weight_scale` per row, multiplied
    by the int8 kernel without being converted."""

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


def int8_linear(module: nn.Module) -> Int8PackedLinear:
    """A Linear's int8 kernel twin, quantized from its float weight; a layer already holding
    torchao's symmetric per-row int8 (an exported `int8wo`, reloaded) keeps its own integers and
    scales (quantizing them again would not: torchao's scale divides by 127.5)."""
    levels, scale = stored_rows(module.weight) or quantize_rows(module.weight.detach())
    bias = module.bias.detach() if module.bias is not None else None
    return Int8PackedLinear(levels, scale, bias)


def stored_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The integers and per-row scales of a torchao `Int8Tensor` quantized per row without zero
    points; None for any other weight."""
    if type(weight).__name__ != "Int8Tensor" or list(weight.block_size) != [1, weight.shape[-1]]:
        return None
    zero_point = getattr(weight, "zero_point", None)
    if zero_point is not None and bool(zero_point.any()):
        return None
    return weight.qdata, weight.scale.reshape(-1)


def int8_head_(model: nn.Module) -> str:
    """Put the output head on the int8 kernel (a token reads it whole; llama.cpp too keeps its
    4-bit files' output layer at 6 or 8 bits). A head tied to the input embedding is untied: the
    embedding keeps its float weight, of which a token reads one row. Returns the head's name."""
    head = model.get_output_embeddings()
    name = next(n for n, m in model.named_modules() if m is head)
    model.set_submodule(name, int8_linear(head))
    model.config.tie_word_embeddings = False
    return name
