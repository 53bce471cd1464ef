"""Apply a recipe to a model, step by step, measuring what each step did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from compbench.compressors.recipe import Recipe
from compbench.compressors.registry import COMPRESSORS, CompressionContext
from compbench.core.measure import PeakMemory, Timer, state_bytes


@dataclass
class CompressionResult:
    """The compressed model and, per step, its wall time, peak memory and own stats."""

    model: nn.Module
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    size_bytes_before: int = 0
    size_bytes_16bit_before: int = 0  # the uncompressed model's bytes in fp16/bf16
    size_bytes: int = 0
    calibration: dict[str, Any] | None = None  # the first calibrated step's data choice


def compress(model: nn.Module, recipe: Recipe,
             context: CompressionContext | None = None) -> CompressionResult:
    """Apply the recipe's steps in order. May return a new model object (quantizers reload).

    Methods that read calibration data need the context's tokenizer and `calibration_text`.
    """
    context = context or CompressionContext()
    result = CompressionResult(model=model, size_bytes_before=state_bytes(model),
                               size_bytes_16bit_before=state_bytes(model, float_bytes=2))
    for step in recipe.steps:
        compressor = COMPRESSORS[step.method]
        with PeakMemory() as memory, Timer() as timer:
            output = compressor.apply(result.model, step.config, context)
        result.model = output.model
        result.steps.append({
            "method": step.method,
            "seconds": timer.seconds,
            "peak_rss_mb": memory.peak_rss_bytes / 2**20,
            "peak_cuda_mb": None if memory.peak_cuda_bytes is None
            else memory.peak_cuda_bytes / 2**20,
            "stats": output.stats,
        })
        result.seconds += timer.seconds
        if result.calibration is None and compressor.uses_calibration(step.config):
            result.calibration = step.config.calibration_record()
    result.size_bytes = state_bytes(result.model)
    return result
