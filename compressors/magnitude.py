"""Unstructured magnitude (L1) pruning: zero the smallest-|w| weights of the decoder's linear layers.

`scope=global` ranks all target weights together (one threshold for the whole model);
`scope=layer` prunes each layer to the same sparsity. Ties at the threshold are broken by
position, so exactly round(sparsity * n) weights are zeroed and the mask is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import linear_layers

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class MagnitudeConfig:
    """Fraction of weights to zero, and whether one threshold spans all layers or each its own."""

    MAIN_OPTION: ClassVar[str] = "sparsity"
    sparsity: float = 0.5  # fraction of target weights set to zero, in [0, 1)
    scope: str = "global"  # "global": one threshold over all layers; "layer": per layer
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got '{self.scope}'")


def prune_smallest_(weights: list[torch.Tensor], n_prune: int) -> None:
    """Zero exactly the `n_prune` smallest-magnitude entries across `weights`, in place."""
    if n_prune <= 0:
        return
    flat = torch.cat([w.detach().abs().flatten().float() for w in weights])
    threshold = torch.kthvalue(flat, n_prune).values
    del flat
    remaining_ties = n_prune - sum(int((w.abs() < threshold).sum()) for w in weights)
    for weight in weights:
        with torch.no_grad():
            magnitude = weight.abs()
            mask = magnitude < threshold
            if remaining_ties > 0:
                tie_positions = (magnitude == threshold).flatten().nonzero().squeeze(1)
                chosen = tie_positions[:remaining_ties]
                mask.view(-1)[chosen] = True
                remaining_ties -= chosen.numel()
            weight.masked_fill_(mask, 0.0)


def apply(model, config: MagnitudeConfig, context: CompressionContext) -> StepOutput:
    """Prune the target layers; return the sparsity reached."""
    layers = linear_layers(model)
    weights = [m.weight.data for m in layers.values()]
    total = sum(w.numel() for w in weights)
    if config.scope == "global":
        prune_smallest_(weights, round(config.sparsity * total))
    else:
        for w in weights:
            prune_smallest_([w], round(config.sparsity * w.numel()))
    zeros = sum(int((w == 0).sum()) for w in weights)
    return StepOutput(model, {"sparsity": zeros / total, "layers": len(layers),
                              "target_params": total})


register_compressor(
    "magnitude", MagnitudeConfig, apply, kind="prune",
    summary="unstructured L1 magnitude pruning of the decoder linears (global or per layer)",
)
