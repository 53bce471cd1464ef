"""Structured pruning: remove whole attention heads and MLP channels, so the model really shrinks.

Unlike unstructured sparsity, the weight matrices get smaller: the result is a smaller dense
model whose config says so (`num_attention_heads`, `intermediate_size`), so it saves with
`save_pretrained`, reloads with stock `from_pretrained`, and runs faster with no sparse kernel.
Every block loses the same number of heads and channels (a Hugging Face config has one size for
all blocks); which ones is decided per block by an activation-aware importance score: the L2
norm of each head's or channel's activations over calibration windows times the norm of the
output weights that read it (Wanda's |w| x ||x|| at the granularity of a head or a channel).

Query heads are removed within each key/value group alike, so grouped-query attention keeps
its key/value heads. Written by hand: no maintained library prunes decoder heads and channels
for Hugging Face models (TextPruner covers encoders only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import find_blocks
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class StructuredConfig(Calibrated):
    """Fractions of query heads and of MLP intermediate channels to remove from every block."""

    nsamples: int = 8  # calibration windows the activation norms are taken over
    heads: float = 0.0  # fraction of query heads removed per key/value group, in [0, 1)
    ffn: float = 0.0  # fraction of MLP intermediate channels removed, in [0, 1)
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        for name in ("heads", "ffn"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.heads == 0.0 and self.ffn == 0.0:
            raise ValueError("nothing to remove: set heads=<fraction> and/or ffn=<fraction>")


def _sliced(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping the given output rows (dim 0) or input columns (dim 1)."""
    weight = linear.weight.data.index_select(dim, keep).clone()
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    new = nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias:
        bias_data = linear.bias.data if dim == 1 else linear.bias.data.index_select(0, keep)
        new.bias.data.copy_(bias_data)
    return new


def _top(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, in their original order (ties: lower index first)."""
    return score.argsort(descending=True, stable=True)[:keep].sort().values


def prune_mlp_(mlp: nn.Module, input_norm: torch.Tensor, remove: int) -> None:
    """Drop the `remove` intermediate channels of a gated MLP with the least activation x weight norm."""
    score = input_norm * mlp.down_proj.weight.float().norm(dim=0)
    keep = _top(score, score.numel() - remove)
    mlp.gate_proj = _sliced(mlp.gate_proj, keep, 0)
    mlp.up_proj = _sliced(mlp.up_proj, keep, 0)
    mlp.down_proj = _sliced(mlp.down_proj, keep, 1)


def prune_heads_(attention: nn.Module, input_norm: torch.Tensor, head_dim: int, kv_heads: int,
                 remove_per_group: int) -> int:
    """Drop the `remove_per_group` query heads of each key/value group whose output (attention
    result x o_proj columns) has the least norm; returns the heads kept."""
    heads = attention.q_proj.out_features // head_dim
    per_group = heads // kv_heads
    o_weight = attention.o_proj.weight.float().reshape(-1, heads, head_dim)
    score = (input_norm.reshape(heads, head_dim).norm(dim=1)
             * o_weight.permute(1, 0, 2).reshape(heads, -1).norm(dim=1)).reshape(kv_heads, per_group)
    kept_heads = []
    for group in range(kv_heads):
        kept_heads += (group * per_group + _top(score[group], per_group - remove_per_group)).tolist()
    rows = torch.tensor([h * head_dim + i for h in kept_heads for i in range(head_dim)],
                        device=attention.q_proj.weight.device)
    attention.q_proj = _sliced(attention.q_proj, rows, 0)
    attention.o_proj = _sliced(attention.o_proj, rows, 1)
    attention.num_key_value_groups = per_group - remove_per_group
    return len(kept_heads)


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = list(find_blocks(model).values())
    if not all(hasattr(m, "self_attn") and hasattr(m, "mlp")
               and all(hasattr(m.self_attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
               and all(hasattr(m.mlp, p) for p in ("gate_proj", "up_proj", "down_proj"))
               for m in blocks):
        raise CompbenchError("structured pruning needs decoder blocks with self_attn.{q,k,v,o}_proj "
                             "and a gated mlp.{gate,up,down}_proj (Llama, Qwen2, Mistral, Phi-3 style)")
    return blocks


@torch.no_grad()
def input_norms(model: nn.Module, modules: list[nn.Module], ids: torch.Tensor) -> list[torch.Tensor]:
    """Per input feature of each module, the L2 norm of its inputs over all calibration tokens."""
    sums = [None] * len(modules)

    def hook(index):
        def record(module, args, output):
            squares = args[0].detach().float().pow(2).sum(dim=tuple(range(args[0].dim() - 1)))
            sums[index] = squares if sums[index] is None else sums[index] + squares
        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    device = next(model.parameters()).device
    try:
        for row in ids:
            model(row.unsqueeze(0).to(device))
    finally:
        for handle in handles:
            handle.remove()
    return [s.sqrt() for s in sums]


@torch.no_grad()
def apply(model: nn.Module, config: StructuredConfig, context: CompressionContext) -> StepOutput:
    blocks = _blocks(model)
    text_config = model.config.get_text_config()
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    intermediate = text_config.intermediate_size
    remove_per_group = round(config.heads * (heads // kv_heads))
    remove_channels = round(config.ffn * intermediate)
    if remove_per_group >= heads // kv_heads:
        raise CompbenchError(f"structured: heads={config.heads} would remove every query head")
    if any(type(m).__name__ not in ("Linear",) for b in blocks
           for m in (b.mlp.gate_proj, b.self_attn.q_proj)):
        raise CompbenchError("structured pruning must come before quantization in a recipe")
    ids = calibration_ids(context, config)
    norms = input_norms(model, [m for b in blocks for m in (b.mlp.down_proj, b.self_attn.o_proj)], ids)
    params_before = sum(p.numel() for p in model.parameters())
    kept_heads = heads
    for i, block in enumerate(blocks):
        if remove_channels:
            prune_mlp_(block.mlp, norms[2 * i], remove_channels)
        if remove_per_group:
            kept_heads = prune_heads_(block.self_attn, norms[2 * i + 1], head_dim, kv_heads,
                                      remove_per_group)
    text_config.num_attention_heads = kept_heads
    text_config.head_dim = head_dim
    text_config.intermediate_size = intermediate - remove_channels
    params_after = sum(p.numel() for p in model.parameters())
    return StepOutput(model, {
        "heads_before": heads, "heads_after": kept_heads,
        "intermediate_before": intermediate, "intermediate_after": intermediate - remove_channels,
        "params_before": params_before, "params_after": params_after,
    })


register_compressor(
    "structured", StructuredConfig, apply, kind="prune", needs_calibration=True,
    summary="remove attention heads and MLP channels by activation x weight norm (smaller dense model)",
)
