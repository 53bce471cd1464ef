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
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.compressors.registry import COMPRESSORS, CompressionContext
from compbench.compressors.targets import exact_pattern, linear_layers
from compbench.errors import CompbenchError

UNITS = ("block", "linear")
_BLOCK = re.compile(r"^(.*?\blayers\.\d+)\.")


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


def units_of(model: nn.Module, unit: str) -> dict[str, list[str]]:
    """Target linears grouped by decoder block (`model.layers.3`) or one linear a unit."""
    names = list(linear_layers(model))
    if unit == "linear":
        return {name: [name] for name in names}
    blocks: dict[str, list[str]] = {}
    for name in names:
        match = _BLOCK.match(name)
        blocks.setdefault(match.group(1) if match else name, []).append(name)
    return blocks


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


def _cache_path(model: nn.Module, step: str, unit: str, calibration: Calibrated) -> Path:
    from compbench.model_zoo.embedded import cache_dir

    key = json.dumps([getattr(model, "name_or_path", ""), str(next(model.parameters()).dtype),
                      _fingerprint(model), step, unit, calibration.calibration_record()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "sensitivity" / f"{digest}.json"


def measure_sensitivity(model: nn.Module, tokenizer, step, unit: str = "block",
                        calibration: Calibrated | None = None, use_cache: bool = True) -> Sensitivity:
    """Perplexity with each unit alone compressed by `step` (a recipe `Step`); cached on disk."""
    from compbench.reports.store import write_json_atomic

    if unit not in UNITS:
        raise CompbenchError(f"unit must be one of {', '.join(UNITS)}, got '{unit}'")
    calibration = calibration or Calibrated(nsamples=4, seqlen=512)
    path = _cache_path(model, str(step), unit, calibration)
    if use_cache and path.is_file():
        try:
            return Sensitivity(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError):
            path.unlink()
    ids = calibration_ids(tokenizer, calibration)
    baseline = window_perplexity(model, ids)
    compressor = COMPRESSORS[step.method]
    context = CompressionContext(tokenizer=tokenizer)
    ppl = {}
    for name, members in tqdm(units_of(model, unit).items(), desc=f"sensitivity to {step}"):
        trial = copy.deepcopy(model)
        trial.compbench_compressible = exact_pattern(members)
        trial = compressor.apply(trial, step.config, context).model
        ppl[name] = window_perplexity(trial, ids)
        del trial
    result = Sensitivity(str(step), unit, calibration.calibration_record(), baseline, ppl)
    write_json_atomic(path, result.__dict__)
    return result
