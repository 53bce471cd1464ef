"""Unstructured magnitude (L1) pruning: zero the smallest-|w| weights of the decoder's linear layers.

Strategies (`scope`), those of the Qwen2 pruning study:
- `global`: one threshold over all target weights.
- `layer`: every linear pruned to the same `sparsity`.
- `ranked`: every decoder block at `sparsity`, except the `top` blocks least sensitive to
  pruning (measured: see `sensitivity.py`), which go to `top_sparsity`.
- `groups`: `groups=self_attn@0.5/mlp@0.25` - linears whose name matches a pattern take its
  sparsity (first match wins), the others `sparsity`.
- `single`: only the linear named by `layer` is pruned, to `sparsity`.
With `n`:`m` set, every group of m consecutive input weights of every row loses its n smallest
(N:M, the weight-only counterpart of Wanda's and SparseGPT's N:M).
Ties at a threshold are broken by position, so exactly round(sparsity * n) weights are zeroed
and the mask is deterministic.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import ClassVar

import torch

from compbench.compressors.calibration import CALIBRATION_FIELDS, Calibrated
from compbench.compressors.nm import check_sparsity
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, target_layers
from compbench.errors import CompbenchError

SCOPES = ("global", "layer", "ranked", "groups", "single")


@dataclass(frozen=True)
class MagnitudeConfig(Calibrated, Targeted):
    """Fraction of weights to zero and how it is spread over the layers (see the module doc).

    Magnitude pruning reads no data; only `scope=ranked` measures sensitivity on calibration
    windows, so the calibration options are accepted with that scope alone."""

    MAIN_OPTION: ClassVar[str] = "sparsity"
    sparsity: float = 0.5  # fraction of target weights set to zero, in [0, 1)
    scope: str = "global"  # one of SCOPES
    top: int = 4  # ranked: how many of the least sensitive blocks get top_sparsity
    top_sparsity: float = 0.5  # ranked: sparsity of those blocks
    groups: str = ""  # groups: pattern@sparsity joined by '/', e.g. self_attn@0.5/mlp@0.25
    layer: str = ""  # single: the full name of the one linear to prune
    n: int = 0  # N:M pattern: zeros per group (0 = unstructured)
    m: int = 0  # N:M pattern: group length along the input dimension
    nsamples: int = 4  # ranked: calibration windows the sensitivity is measured on
    version: int = 2  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if self.scope != "ranked":
            given = [f for f in CALIBRATION_FIELDS
                     if getattr(self, f) != type(self).__dataclass_fields__[f].default]
            if given:
                raise ValueError(f"calibration options ({', '.join(given)}) apply to scope=ranked "
                                 "only: magnitude pruning reads no data")
        object.__setattr__(self, "sparsity", check_sparsity(self.sparsity, self.n, self.m))
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got '{self.scope}'")
        if not 0.0 <= self.top_sparsity < 1.0:
            raise ValueError(f"top_sparsity must be in [0, 1), got {self.top_sparsity}")
        if self.top < 1:
            raise ValueError(f"top must be >= 1, got {self.top}")
        if self.m and self.scope != "global":
            raise ValueError("an N:M pattern applies to every layer; it takes no scope")
        if self.scope == "groups":
            self.group_sparsities()
        elif self.groups:
            raise ValueError("option 'groups' needs scope=groups")
        if self.scope == "single" and not self.layer:
            raise ValueError("scope=single needs layer=<name of a linear layer>")
        if self.layer and self.scope != "single":
            raise ValueError("option 'layer' needs scope=single")

    def group_sparsities(self) -> list[tuple[str, float]]:
        """The parsed `groups` option: (name pattern, sparsity) pairs, in order."""
        if not self.groups:
            raise ValueError("scope=groups needs groups=<pattern>@<sparsity>/..., "
                             "e.g. groups=self_attn@0.5/mlp@0.25")
        pairs = []
        for item in self.groups.split("/"):
            pattern, _, value = item.rpartition("@")
            try:
                sparsity = float(value)
                re.compile(pattern)
            except (ValueError, re.error):
                raise ValueError(f"bad group '{item}': expected <pattern>@<sparsity>") from None
            if not pattern or not 0.0 <= sparsity < 1.0:
                raise ValueError(f"bad group '{item}': need a pattern and a sparsity in [0, 1)")
            pairs.append((pattern, sparsity))
        return pairs


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


def prune_nm_(weight: torch.Tensor, n: int, m: int) -> None:
    """Zero the `n` smallest-magnitude weights of every `m` consecutive inputs of each row."""
    rows, columns = weight.shape
    if columns % m:
        raise CompbenchError(f"magnitude: N:M needs input widths divisible by m={m}, got {columns}")
    groups = weight.view(rows, columns // m, m)
    smallest = groups.abs().topk(n, dim=2, largest=False).indices
    groups.scatter_(2, smallest, 0.0)


def _ranked_sparsities(model, names: list[str], config: MagnitudeConfig,
                       context: CompressionContext) -> dict[str, float]:
    """Per-linear sparsity: `top_sparsity` in the least sensitive blocks, `sparsity` elsewhere."""
    from compbench.compressors.recipe import make_step
    from compbench.compressors.sensitivity import measure_sensitivity, units_of

    probe = make_step("magnitude", {"sparsity": config.top_sparsity, "scope": "layer"})
    calibration = Calibrated(config.calibration, config.nsamples, config.seqlen, config.seed)
    delta = measure_sensitivity(model, context, probe, "block", calibration, selection=config).delta()
    blocks = units_of(model, "block", config)
    if config.top > len(blocks):
        raise CompbenchError(f"magnitude: top={config.top} but the model has {len(blocks)} blocks")
    least_sensitive = sorted(blocks, key=lambda b: (delta[b], b))[: config.top]
    raised = {name for block in least_sensitive for name in blocks[block]}
    return {n: config.top_sparsity if n in raised else config.sparsity for n in names}


def _group_sparsities(names: list[str], config: MagnitudeConfig) -> dict[str, float]:
    groups = config.group_sparsities()
    for pattern, _ in groups:
        if not any(re.search(pattern, n) for n in names):
            raise CompbenchError(f"magnitude: group pattern '{pattern}' matches no target layer "
                                 f"(e.g. {names[0]})")
    return {n: next((s for p, s in groups if re.search(p, n)), config.sparsity) for n in names}


def _single(names: list[str], config: MagnitudeConfig) -> dict[str, float]:
    if config.layer not in names:
        close = difflib.get_close_matches(config.layer, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CompbenchError(f"magnitude: unknown layer '{config.layer}'; {hint}"
                             f"target layers are named like {names[0]}")
    return {config.layer: config.sparsity}


def apply(model, config: MagnitudeConfig, context: CompressionContext) -> StepOutput:
    """Prune the target layers by the chosen strategy; return the sparsity reached."""
    layers = target_layers(model, config, "magnitude")
    names = list(layers)
    weights = [m.weight.data for m in layers.values()]
    total = sum(w.numel() for w in weights)
    per_layer = None
    if config.m:
        for weight in weights:
            prune_nm_(weight, config.n, config.m)
    elif config.scope == "global":
        prune_smallest_(weights, round(config.sparsity * total))
    else:
        per_layer = {
            "layer": lambda: dict.fromkeys(names, config.sparsity),
            "ranked": lambda: _ranked_sparsities(model, names, config, context),
            "groups": lambda: _group_sparsities(names, config),
            "single": lambda: _single(names, config),
        }[config.scope]()
        for name, sparsity in per_layer.items():
            weight = layers[name].weight.data
            prune_smallest_([weight], round(sparsity * weight.numel()))
    zeros = sum(int((w == 0).sum()) for w in weights)
    stats = {"sparsity": zeros / total, "layers": len(layers), "target_params": total}
    if per_layer is not None and config.scope != "layer":
        stats["layer_sparsity"] = per_layer
    return StepOutput(model, stats)


register_compressor(
    "magnitude", MagnitudeConfig, apply, kind="prune", axes=("sparsity",),
    needs_calibration=lambda config: config.scope == "ranked",
    summary="unstructured L1 magnitude pruning (global, layer, ranked, groups or single)",
)
