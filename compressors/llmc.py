"""The bridge to llm-compressor, which runs GPTQ, RTN, Wanda and SparseGPT for compbench.

llm-compressor (vLLM project) is the maintained successor of AutoGPTQ's and SparseML's
algorithms; auto-gptq no longer imports with transformers 5. Its `sequential` pipeline is the
layer-by-layer calibration runner: it feeds the calibration batches through one decoder layer at
a time, collects the layer's statistic with hooks (the Hessian for GPTQ/SparseGPT, input norms
for Wanda), compresses the layer, then re-runs it so the next layer sees the compressed outputs.
Peak memory is one layer's activations plus the weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from types import FunctionType

from torch import nn

from compbench.compressors.calibration import Calibrated, calibration_loader
from compbench.compressors.registry import CompressionContext


def _quiet() -> None:
    os.environ.setdefault("LLM_COMPRESSOR_LOG_DISABLED", "1")
    from loguru import logger

    logger.disable("llmcompressor")
    logger.disable("compressed_tensors")


def target_names(layers: dict[str, nn.Module]) -> list[str]:
    """Layers as llm-compressor `re:` patterns of their exact names, so selection stays ours."""
    return [f"re:^{re.escape(name)}$" for name in layers]


def oneshot_(model: nn.Module, modifiers: list, method: str, context: CompressionContext,
             calibration: Calibrated | None = None) -> None:
    """Run llm-compressor's one-shot flow in place; calibrated modifiers go layer by layer."""
    _quiet()
    from llmcompressor import oneshot

    kwargs = {}
    if calibration is not None:
        kwargs = {"dataset": calibration_loader(context, calibration),
                  "num_calibration_samples": calibration.nsamples, "pipeline": "sequential"}
    oneshot(model=model, recipe=modifiers, **kwargs)
    undo_offloading(model)


def undo_offloading(model: nn.Module) -> None:
    """Undo the offloading oneshot leaves on every module it dispatched (parameters in an
    OffloadCache, a forward that moves its inputs to the onload device): a Python detour on each
    call of each module, and graph breaks for torch.compile.
    compbench offloads nothing, so the tensors stay where they are. compressed-tensors'
    `remove_dispatch` sets each module's forward back on the instance, as the function it had
    wrapped; such instance forwards (the class's own, or another offload wrapper) are dropped,
    so every module runs its class's forward (written here because the library leaves them)."""
    import compressed_tensors.offload.module as offload
    from compressed_tensors.offload import remove_dispatch

    remove_dispatch(model, onload_tensors=True)
    # what remove_dispatch leaves: the class's forward, or a wrapper
    _drop_instance_forwards(model, lambda module, forward: forward is type(module).forward
                            or forward.__code__.co_filename == offload.__file__)


def _drop_instance_forwards(model: nn.Module,
                            drops: Callable[[nn.Module, FunctionType], bool]) -> None:
    """Delete each instance forward that `drops` picks, so its module runs its class's forward."""
    for module in model.modules():
        forward = getattr(module.__dict__.get("forward"), "__func__", None)
        if forward is not None and drops(module, forward):
            del module.forward


def _quantizes_activations(module: nn.Module) -> bool:
    """Whether compressed-tensors still quantizes this module's inputs or outputs at each call."""
    scheme = getattr(module, "quantization_scheme", None)
    return scheme is not None and bool(scheme.input_activations or scheme.output_activations)


def decompress_for_inference(model: nn.Module) -> bool:
    """Turn a compressed-tensors model (its integers packed, as compbench stores GPTQ, RTN and
    AWQ and as `from_pretrained` loads them) into the plain float model it stands for, now, and
    say whether it was one. compressed-tensors has no CPU kernel for packed weights: its own hook
    decompresses the whole model at the first forward, and leaves every module behind its
    offloading's forward and every layer behind a quantized forward that no longer quantizes
    anything (the weights are dequantized): a Python detour a call. Evaluation and `compbench
    speed` run this first, so a row's kernels and bytes read are those that run; a model to be
    saved stays packed."""
    if not hasattr(model, "ct_decompress_hook"):
        return False
    import compressed_tensors.quantization.lifecycle.forward as quantized
    from compressed_tensors.compressors import ModelCompressor

    ModelCompressor.from_pretrained_model(model).decompress_model(model)  # removes the hook it holds
    # each `compress_model` (llm-compressor's save_pretrained calls it again) registers another
    # hook and keeps the handle of the last only; an earlier one would decompress again, and fail
    for key, hook in list(model._forward_pre_hooks.items()):
        if getattr(hook, "__name__", None) == "ct_decompress_hook":
            del model._forward_pre_hooks[key]
    undo_offloading(model)
    _drop_instance_forwards(model, lambda module, forward: not _quantizes_activations(module)
                            and forward.__code__.co_filename == quantized.__file__)
    for module in model.modules():
        if _quantizes_activations(module):
            continue
        for name, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if name.startswith("weight_"):  # the scales and zero points the weights were made from
                delattr(module, name)
    return True


def drop_compressed_save(model: nn.Module) -> None:
    """Give back stock `save_pretrained` (oneshot wraps it) when the result is a plain dense model."""
    model.__dict__.pop("save_pretrained", None)
