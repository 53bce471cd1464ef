"""torchao int8 weight quantization: `torchao-int8` (weight-only, one scale per output row), and
with `activations=true` the W8A8 variant (per-token dynamic int8 activations as well).

Goes through transformers' `TorchAoConfig` (see `hf_quantizer.py`), so it saves to safetensors
and reloads with stock `from_pretrained` (torchao installed). torchao 0.18's int4 weight layouts
run only on CUDA kernels (its CPU int4 layout was removed), so int4 is not offered here: for 4-bit
on the CPU use `rtn`/`gptq` (packed) or `nf4`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from compbench.compressors.hf_quantizer import reload_quantized
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, linear_layers


@dataclass(frozen=True)
class TorchaoInt8Config(Targeted):
    """int8 weights with a scale per output row; `activations`: also int8 activations, per token."""

    activations: bool = False  # W8A8: quantize each token's activations on the fly as well
    version: int = 1  # bump when the method's behaviour changes


@contextlib.contextmanager
def quiet_torchao_import():
    """torchao's import logs a warning per CUDA-only extension it cannot load and per enum it
    registers with torch.compile: noise on a CPU machine, so those two loggers are muted for it."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def apply(model, config: TorchaoInt8Config, context: CompressionContext) -> StepOutput:
    with quiet_torchao_import():
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
        )
    from transformers import TorchAoConfig

    scheme = Int8DynamicActivationInt8WeightConfig() if config.activations else Int8WeightOnlyConfig()
    quantized = reload_quantized(
        model, config, "torchao-int8", lambda skip: TorchAoConfig(scheme, modules_to_not_convert=skip))
    return StepOutput(quantized, {"quantized_layers": len(linear_layers(quantized, config))})


register_compressor(
    "torchao-int8", TorchaoInt8Config, apply, kind="quantize", terminal=True, trainable=False,
    libraries=("torchao",),
    summary="torchao int8 weights (weight-only; activations=true: W8A8 dynamic)",
)
