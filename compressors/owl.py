"""OWL (Yin et al. 2024): outlier-weighted layerwise sparsity for Wanda and SparseGPT.

Blocks that hold more outliers keep more weights. A block's outlier ratio D is the share of
its Wanda scores |W_ij| * ||X_j|| above `m` times the block's mean score, measured on the dense
model over the calibration tokens. The ratios are scaled to [0, 2*lambda]; block l is pruned to
`sparsity - (D_l - mean(D))`, so the mean over blocks stays `sparsity` and the blocks' sparsities
span 2*lambda (the rule of the paper's code; M=5, lambda=0.08 are its LLaMA settings).

llm-compressor 0.14 has this rule (`sparsity_profile="owl"`) but its run fails before it
starts: it calibrates inside `on_initialize`, and its own lifecycle refuses the event
("Cannot invoke event before initializing"). So compbench measures the ratios here and hands
llm-compressor's pruners one sparsity per layer, which they accept.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from compbench.compressors.calibration import collect_inputs
from compbench.compressors.targets import block_of, find_blocks


def outlier_ratio(scores: torch.Tensor, m: float) -> float:
    """Share of `scores` above `m` times their mean (a block's layerwise outlier distribution)."""
    return float((scores > m * scores.mean()).float().mean())


def owl_sparsities(ratios: dict[str, float], sparsity: float, lmbda: float) -> dict[str, float]:
    """Each block's sparsity from its outlier ratio: more outliers, less pruning; mean kept."""
    low, high = min(ratios.values()), max(ratios.values())
    if high == low:
        return dict.fromkeys(ratios, sparsity)
    scaled = {name: (ratio - low) / (high - low) * 2 * lmbda for name, ratio in ratios.items()}
    mean = sum(scaled.values()) / len(scaled)
    return {name: sparsity - (value - mean) for name, value in scaled.items()}


def input_norms(model: nn.Module, layers: dict[str, nn.Module], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """||X_j|| of each layer's input features over the calibration rows, from the dense model."""
    squares: dict[str, torch.Tensor] = {}

    def accumulate(name: str, x: torch.Tensor) -> None:
        squares[name] = squares.get(name, 0) + x.pow(2).sum(dim=0)

    collect_inputs(model, layers, ids, accumulate, "owl: input norms")
    return {name: value.sqrt() for name, value in squares.items()}


def layer_sparsities(model: nn.Module, layers: dict[str, nn.Module], ids: torch.Tensor,
                     sparsity: float, m: float, lmbda: float) -> tuple[dict[str, float], dict[str, float]]:
    """OWL's sparsity for every layer (its block's), and the per-block sparsities it chose."""
    norms = input_norms(model, layers, ids)
    blocks = find_blocks(model)
    scores: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, module in layers.items():
        scores[block_of(name, blocks)].append((module.weight.detach().abs().float() * norms[name]).flatten())
    ratios = {block: outlier_ratio(torch.cat(parts), m) for block, parts in scores.items()}
    chosen = owl_sparsities(ratios, sparsity, lmbda)
    return {name: chosen[block_of(name, blocks)] for name in layers}, chosen
