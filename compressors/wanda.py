"""Wanda (Sun et al. 2023): prune by |weight| x input-activation norm, per output row, no weight update.

The score of weight W[i, j] is |W[i, j]| * ||X_j||, where ||X_j|| is the L2 norm of input
feature j over the calibration tokens; each output row (Wanda's comparison group) keeps its
highest-scoring weights, or the top M-N of every M consecutive inputs for N:M. Runs through
llm-compressor's layer-by-layer pipeline (`llmc.py`), so each layer's norms are taken on the
outputs of the already-pruned layers before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compbench.compressors.nm import CalibratedSparsity, run_pruner
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor


@dataclass(frozen=True)
class WandaConfig(CalibratedSparsity):
    """Sparsity (or N:M) and the calibration set; Wanda has no other knobs."""

    version: int = 1  # bump when the method's behaviour changes


def apply(model: nn.Module, config: WandaConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return run_pruner(model, WandaPruningModifier, "wanda", config, context)


register_compressor(
    "wanda", WandaConfig, apply, kind="prune", needs_calibration=True, axes=("sparsity",),
    libraries=("llmcompressor", "compressed-tensors"),
    summary="Wanda: prune by |weight| x input norm per output row (unstructured or N:M)",
)
