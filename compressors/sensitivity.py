"""Layer sensitivity: compress one unit (a decoder block, or one linear) at a time, measure the damage.

For each unit, a copy of the model has only that unit's linears compressed by the given step,
and its perplexity on calibration windows (the wikitext-2 validation text by default, never the
test text) is compared with the uncompressed model's. Ranked magnitude pruning and mixed 4/8-bit
quantization read these numbers; `compbench sensitivity` prints them. Results are cached in the
user cache, keyed by the model (its weights' fingerprint included), the step, the unit and the
calibration windows.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.compressors.registry import COMPRESSORS, CompressionContext
from compbench.compressors.targets import Targeted, block_of, exact_pattern, find_blocks, linear_layers
from compbench.core.io import cache_dir, write_json_atomic
from compbench.errors import CompbenchError

UNITS = ("block", "linear")


@dataclass(frozen=True)
class Sensitivity:
    """Perplexity on the calibration windows: uncompressed, and with each unit alone compressed."""

    step: str
    unit: str
    calibration: dict
    baseline_ppl: float
    ppl: dict[str, float]

    def delta(self) -> dict[str, float]:
        """Relative perplexity increase per unit (0.1 = +10%)."""
        return {name: value / self.baseline_ppl - 1.0 for name, value in self.ppl.items()}


def units_of(model: nn.Module, unit: str, selection: Targeted | None = None) -> dict[str, list[str]]:
    """Target linears grouped by block (`model.layers.3`, found from the model's structure) or
    one linear a unit."""
    names = list(linear_layers(model, selection))
    if unit == "linear":
        return {name: [name] for name in names}
    blocks = find_blocks(model)
    units: dict[str, list[str]] = {}
    for name in names:
        units.setdefault(block_of(name, blocks), []).append(name)
    return units


@torch.no_grad()
def window_perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    """Token perplexity over calibration windows, each scored on its own."""
    device = next(model.parameters()).device
    nll = 0.0
    for row in ids:
        batch = row.unsqueeze(0).to(device)
        nll += float(model(batch, labels=batch).loss)
    return math.exp(nll / len(ids))


def _fingerprint(model: nn.Module) -> list:
    """The target weights' names, shapes and sums: a model changed by an earlier recipe step
    (pruned, resized) gets its own cache entry."""
    return [(name, list(m.weight.shape), float(m.weight.detach().double().abs().sum()))
            for name, m in linear_layers(model).items()]


def _cache_path(model: nn.Module, step: str, unit: str, calibration: Calibrated,
                selection: Targeted | None) -> Path:
    key = json.dumps([getattr(model, "name_or_path", ""), str(next(model.parameters()).dtype),
                      _fingerprint(model), step, unit, calibration.calibration_record(),
                      [selection.targets, selection.ignore] if selection else None])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "sensitivity" / f"{digest}.json"


def measure_sensitivity(model: nn.Module, context: CompressionContext, step, unit: str = "block",
                        calibration: Calibrated | None = None, use_cache: bool = True,
                        selection: Targeted | None = None) -> Sensitivity:
    """Perplexity with each unit of the `selection`'s layers alone compressed by `step` (a recipe
    `Step` whose method selects layers); cached on disk."""
    if unit not in UNITS:
        raise CompbenchError(f"unit must be one of {', '.join(UNITS)}, got '{unit}'")
    if not isinstance(step.config, Targeted):
        raise CompbenchError(f"sensitivity: '{step.method}' compresses the whole model, not chosen "
                             "layers; use a method with targets (magnitude, rtn, nf4, int8, …)")
    if model.get_output_embeddings() is None:  # a classifier: no next-token logits
        raise CompbenchError(f"sensitivity (and mixed, which uses it) scores layers by the next-token "
                             f"perplexity of calibration text; {type(model).__name__} has no "
                             "language-model head: use it on decoders")
    calibration = calibration or Calibrated(nsamples=4, seqlen=512)
    path = _cache_path(model, str(step), unit, calibration, selection)
    if use_cache and path.is_file():
        try:
            return Sensitivity(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError):
            path.unlink()
    ids = calibration_ids(context, calibration)
    baseline = window_perplexity(model, ids)
    compressor = COMPRESSORS[step.method]
    ppl = {}
    for name, members in tqdm(units_of(model, unit, selection).items(), desc=f"sensitivity to {step}"):
        trial = copy.deepcopy(model)
        config = dataclasses.replace(step.config, targets=exact_pattern(members), ignore="")
        trial = compressor.apply(trial, config, context).model
        ppl[name] = window_perplexity(trial, ids)
        del trial
    result = Sensitivity(str(step), unit, calibration.calibration_record(), baseline, ppl)
    write_json_atomic(path, result.__dict__)
    return result
