"""Structured pruning: remove whole attention heads and MLP channels, so the model really shrinks.

Unlike unstructured sparsity, the weight matrices get smaller: the result is a smaller dense
model whose config says so (`num_attention_heads`, `intermediate_size`), so it saves with
`save_pretrained`, reloads with stock `from_pretrained`, and runs faster with no sparse kernel.
Every block loses the same number of heads and channels (a Hugging Face config has one size for
all blocks); which ones is decided per block by an activation-aware importance score: the L2
norm of each head's or channel's activations over calibration windows times the norm of the
output weights that read it (Wanda's |w| x ||x|| at the granularity of a head or a channel).

Query heads are removed within each key/value group alike, so grouped-query attention keeps
its key/value heads. BERT-style encoders (minilm-l6-v2) lose FFN channels the same way, and
whole heads (query, key and value); transformers 5 cannot express fewer heads of the same size
in a BERT config, so their removal is recorded as `pruned_heads` and the folder reloads with
compbench (model_zoo/pruned_heads.py). Written by hand: no maintained library prunes heads and
channels of Hugging Face models (TextPruner, for encoders, is unmaintained).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import find_blocks
from compbench.errors import CompbenchError
from compbench.model_zoo.pruned_heads import encoder_attentions, keep_heads_, sliced_linear


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


def _top(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, in their original order (ties: lower index first)."""
    return score.argsort(descending=True, stable=True)[:keep].sort().values


@dataclass(frozen=True)
class FfnLayout:
    """Where a block's feed-forward linears are: those whose output rows are the intermediate
    channels, and the one that reads them (paths inside the block)."""

    writers: tuple[str, ...]
    reader: str


DECODER_FFN = FfnLayout(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")  # Llama, Qwen2, …
ENCODER_FFN = FfnLayout(("intermediate.dense",), "output.dense")  # BERT, RoBERTa


def _get(block: nn.Module, path: str) -> nn.Module:
    return block.get_submodule(path)


def _set(block: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(block.get_submodule(parent) if parent else block, name, module)


def prune_ffn_(block: nn.Module, layout: FfnLayout, input_norm: torch.Tensor, remove: int) -> None:
    """Drop the `remove` intermediate channels with the least activation x weight norm."""
    reader = _get(block, layout.reader)
    score = input_norm * reader.weight.float().norm(dim=0)
    keep = _top(score, score.numel() - remove)
    for path in layout.writers:
        _set(block, path, sliced_linear(_get(block, path), keep, 0))
    _set(block, layout.reader, sliced_linear(reader, keep, 1))


def head_scores(input_norm: torch.Tensor, reader: nn.Linear, heads: int, head_dim: int) -> torch.Tensor:
    """Per head: the norm of its attention output times the norm of the reader's columns for it."""
    weight = reader.weight.float().reshape(-1, heads, head_dim).permute(1, 0, 2).reshape(heads, -1)
    return input_norm.reshape(heads, head_dim).norm(dim=1) * weight.norm(dim=1)


def prune_heads_(attention: nn.Module, input_norm: torch.Tensor, head_dim: int, kv_heads: int,
                 remove_per_group: int) -> int:
    """Drop the `remove_per_group` query heads of each key/value group of a decoder attention
    with the least output x o_proj norm; returns the heads kept."""
    heads = attention.q_proj.out_features // head_dim
    per_group = heads // kv_heads
    score = head_scores(input_norm, attention.o_proj, heads, head_dim).reshape(kv_heads, per_group)
    kept_heads = []
    for group in range(kv_heads):
        kept_heads += (group * per_group + _top(score[group], per_group - remove_per_group)).tolist()
    rows = torch.tensor([h * head_dim + i for h in kept_heads for i in range(head_dim)],
                        device=attention.q_proj.weight.device)
    attention.q_proj = sliced_linear(attention.q_proj, rows, 0)
    attention.o_proj = sliced_linear(attention.o_proj, rows, 1)
    attention.num_key_value_groups = per_group - remove_per_group
    return len(kept_heads)


def prune_encoder_heads_(attention: nn.Module, input_norm: torch.Tensor, heads: int, head_dim: int,
                         remove: int) -> list[int]:
    """Drop the `remove` heads of a BERT attention (query, key, value and output) with the least
    output x output.dense norm; returns the heads removed (original indices)."""
    score = head_scores(input_norm, attention.output.dense, heads, head_dim)
    kept = _top(score, heads - remove).tolist()
    keep_heads_(attention, kept, head_dim)
    return [h for h in range(heads) if h not in kept]


def _has(block: nn.Module, paths) -> bool:
    try:
        return all(isinstance(block.get_submodule(p), nn.Linear) for p in paths)
    except AttributeError:
        return False


def _blocks(model: nn.Module) -> tuple[list[nn.Module], FfnLayout]:
    """The blocks and their feed-forward layout: decoder blocks (self_attn.{q,k,v,o}_proj and a
    gated mlp) or BERT-style encoder layers (intermediate.dense, output.dense)."""
    blocks = list(find_blocks(model).values())
    attention = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
    if all(_has(b, attention + DECODER_FFN.writers + (DECODER_FFN.reader,)) for b in blocks):
        return blocks, DECODER_FFN
    if all(_has(b, ENCODER_FFN.writers + (ENCODER_FFN.reader,)) for b in blocks):
        return blocks, ENCODER_FFN
    raise CompbenchError("structured pruning needs decoder blocks with self_attn.{q,k,v,o}_proj and a "
                         "gated mlp.{gate,up,down}_proj (Llama, Qwen2, Mistral, Phi-3 style) or "
                         "BERT-style encoder layers (intermediate.dense, output.dense)")


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
    blocks, layout = _blocks(model)
    text_config = model.config.get_text_config()
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    intermediate = text_config.intermediate_size
    encoder = layout is ENCODER_FFN
    remove_per_group = round(config.heads * (heads // kv_heads))  # decoders: within each group
    remove_heads = round(config.heads * heads)  # encoders: key and value heads go too
    remove_channels = round(config.ffn * intermediate)
    if (remove_heads if encoder else remove_per_group) >= (heads if encoder else heads // kv_heads):
        raise CompbenchError(f"structured: heads={config.heads} would remove every query head")
    already = (getattr(model.config, "pruned_heads", None) or {}) if encoder else {}
    if already and config.heads:
        raise CompbenchError("structured: this encoder already had heads removed; give one heads= step")
    if any(type(_get(b, path)) is not nn.Linear for b in blocks for path in layout.writers):
        raise CompbenchError("structured pruning must come before quantization in a recipe")
    ids = calibration_ids(context, config)
    attentions = encoder_attentions(model) if encoder else [b.self_attn for b in blocks]
    readers = [_get(b, layout.reader) for b in blocks]
    readers += [a.output.dense if encoder else a.o_proj for a in attentions]
    norms = input_norms(model, readers, ids)
    params_before = sum(p.numel() for p in model.parameters())
    kept_heads, pruned_heads = heads - len(already.get("0", [])), {}
    for i, (block, attention) in enumerate(zip(blocks, attentions, strict=True)):
        if remove_channels:
            prune_ffn_(block, layout, norms[i], remove_channels)
        if encoder and remove_heads:
            pruned_heads[str(i)] = prune_encoder_heads_(attention, norms[len(blocks) + i], heads,
                                                        head_dim, remove_heads)
            kept_heads = heads - remove_heads
        elif remove_per_group:
            kept_heads = prune_heads_(attention, norms[len(blocks) + i], head_dim, kv_heads,
                                      remove_per_group)
    if encoder:  # the config keeps the head size (hidden / heads) and records what went
        if pruned_heads:
            model.config.pruned_heads = pruned_heads
    else:
        text_config.num_attention_heads = kept_heads
        text_config.head_dim = head_dim
    text_config.intermediate_size = intermediate - remove_channels
    params_after = sum(p.numel() for p in model.parameters())
    return StepOutput(model, {
        "heads_before": heads - len(already.get("0", [])), "heads_after": kept_heads,
        "intermediate_before": intermediate, "intermediate_after": intermediate - remove_channels,
        "params_before": params_before, "params_after": params_after,
    })


register_compressor(
    "structured", StructuredConfig, apply, kind="prune", needs_calibration=True, axes=("heads", "ffn"),
    summary="remove attention heads and MLP channels by activation x weight norm (smaller dense model)",
)
