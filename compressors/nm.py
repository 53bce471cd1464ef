"""What the calibrated pruners (Wanda, SparseGPT) share: options, the N:M check, OWL's per-block
sparsities, the llm-compressor run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.compressors.llmc import drop_compressed_save, oneshot_, target_names
from compbench.compressors.owl import layer_sparsities
from compbench.compressors.registry import CompressionContext, StepOutput
from compbench.compressors.targets import Targeted, linear_layers, sparsity_of, target_layers


def check_sparsity(sparsity: float, n: int, m: int) -> float:
    """Validate an unstructured sparsity or an N:M pattern; the sparsity it means (n/m for N:M)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if (n == 0) != (m == 0):
        raise ValueError(f"give both n and m for an N:M pattern, got n={n} m={m}")
    if not m:
        return sparsity
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < n < m, got n={n} m={m}")
    if sparsity not in (0.5, n / m):  # 0.5: the default
        raise ValueError(f"an {n}:{m} pattern has sparsity {n / m:g}; drop sparsity={sparsity:g}")
    return n / m


@dataclass(frozen=True)
class CalibratedSparsity(Calibrated, Targeted):
    """Unstructured `sparsity`, or N zeros in every M consecutive input weights when `n`:`m` is set."""

    MAIN_OPTION: ClassVar[str] = "sparsity"
    # in the identity only when set, so every artifact made before OWL existed keeps its key
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("owl", "owl_m", "owl_lambda")
    sparsity: float = 0.5  # fraction of target weights set to zero, in [0, 1); n/m when N:M
    n: int = 0  # N:M pattern: zeros per group (0 = unstructured)
    m: int = 0  # N:M pattern: group length along the input dimension
    owl: bool = False  # OWL: one sparsity per block from its outlier ratio, mean = sparsity (owl.py)
    owl_m: float = 5.0  # OWL: a score is an outlier above owl_m x its block's mean score
    owl_lambda: float = 0.08  # OWL: the blocks' sparsities span 2 x owl_lambda around sparsity

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "sparsity", check_sparsity(self.sparsity, self.n, self.m))
        if self.owl and self.m:
            raise ValueError("owl=true gives each block its own unstructured sparsity; an N:M "
                             "pattern has one fixed sparsity: drop n/m or owl")
        if self.owl_m <= 0:
            raise ValueError(f"owl_m must be > 0, got {self.owl_m}")
        widest = min(self.sparsity, 1 - self.sparsity) / 2  # blocks span 2 x owl_lambda
        if self.owl and not 0 < self.owl_lambda <= widest:
            raise ValueError(f"owl_lambda must be in (0, {widest:g}] so every block's sparsity "
                             f"stays in [0, 1], got {self.owl_lambda}")

    def mask_structure(self) -> str:
        """llm-compressor's spelling of the pattern: "N:M", or "0:0" for unstructured."""
        return f"{self.n}:{self.m}"


def follows_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of `m` consecutive input weights of every row holds at least `n` zeros."""
    rows, columns = weight.shape
    if columns % m:
        return False
    zeros = (weight.reshape(rows, columns // m, m) == 0).sum(dim=2)
    return bool((zeros >= n).all())


def run_pruner(model: nn.Module, modifier_cls: type, method: str, config: CalibratedSparsity,
               context: CompressionContext, **options) -> StepOutput:
    """Prune the target linears with an llm-compressor sparsity modifier, layer by layer."""
    layers = target_layers(model, config, method)
    stats = {}
    sparsity: float | list[float] = config.sparsity
    if config.owl:
        by_layer, by_block = layer_sparsities(model, layers, calibration_ids(context, config),
                                              config.sparsity, config.owl_m, config.owl_lambda)
        # llm-compressor reads a list in the order it finds the targets: the model's order
        sparsity = [by_layer[name] for name, _ in model.named_modules() if name in by_layer]
        stats["owl_block_sparsity"] = by_block
    modifier = modifier_cls(sparsity=sparsity, mask_structure=config.mask_structure(),
                            targets=target_names(layers), **options)
    oneshot_(model, [modifier], method, context, calibration=config)
    drop_compressed_save(model)  # the result is a plain dense model: stock save_pretrained
    return StepOutput(model, {"sparsity": sparsity_of(linear_layers(model, config)),
                              "layers": len(layers), **stats})
