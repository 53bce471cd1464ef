"""SparseGPT (Frantar & Alistarh 2023): OBS-style pruning that updates the remaining weights.

For each layer, the Hessian H = 2 X X^T of its calibration inputs is damped and inverted; in
blocks of columns, the weights with the smallest w^2 / [H^-1]_jj are pruned (per block, or N
of every M for N:M) and each pruned weight's error is spread over the columns not yet processed.
Runs through llm-compressor's layer-by-layer pipeline (`llmc.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compbench.compressors.nm import CalibratedSparsity, run_pruner
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor


@dataclass(frozen=True)
class SparseGPTConfig(CalibratedSparsity):
    """Sparsity (or N:M), the calibration set, and the reconstruction's damping and block size."""

    damp: float = 0.01  # fraction of the mean Hessian diagonal added before inversion
    block_size: int = 128  # columns whose mask is chosen together
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.damp < 1.0:
            raise ValueError(f"damp must be in (0, 1), got {self.damp}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


def apply(model: nn.Module, config: SparseGPTConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.pruning import SparseGPTModifier

    return run_pruner(model, SparseGPTModifier, "sparsegpt", config, context,
                      dampening_frac=config.damp, block_size=config.block_size)


register_compressor(
    "sparsegpt", SparseGPTConfig, apply, kind="prune", needs_calibration=True, axes=("sparsity",),
    libraries=("llmcompressor", "compressed-tensors"),
    summary="SparseGPT: Hessian-based pruning with weight reconstruction (unstructured or N:M)",
)
