"""Integer weight quantization in groups: `gptq` (Hessian-aware, with calibration) and `rtn` (its baseline).

Both produce the same storage format (compressed-tensors `pack-quantized`: b-bit integers
packed into int32, one scale per group, zero points when asymmetric, group indices with
act-order), so GPTQ and RTN differ only in how the integers are chosen: RTN rounds each weight
to the nearest level; GPTQ quantizes column by column and spreads each column's error over the
columns not yet quantized, weighted by the inverse Hessian of the layer's inputs. Both run
through llm-compressor (see `llmc.py`). The packed model is what stays in memory and what
`save_pretrained` writes; stock `from_pretrained` reloads it (with compressed-tensors installed).

Weights that are exactly zero before quantization (an earlier pruning step) are zero after it:
zero is a level of every symmetric grid and of every asymmetric grid of a group that holds a
zero, so keeping the mask costs no extra storage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from compbench.compressors.calibration import Calibrated
from compbench.compressors.llmc import oneshot_, target_names
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, check_groups_fit, target_layers
from compbench.core.tensors import dense_weight

BITS = (2, 3, 4, 8)


def check_bits_and_group(bits: int, group_size: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0: one scale per output row), got {group_size}")


FORMATS = ("compressed-tensors", "int4-cpu")


def check_format(config) -> None:
    if config.format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got '{config.format}'")
    if config.format == "int4-cpu":
        from compbench.compressors.int4 import GROUP_SIZES

        if config.bits != 4 or config.group_size not in GROUP_SIZES:
            raise ValueError("format=int4-cpu holds 4-bit weights in groups of "
                             f"{', '.join(map(str, GROUP_SIZES))} (the CPU int4 kernel's); got "
                             f"bits={config.bits}, group_size={config.group_size}")
        if getattr(config, "act_order", False):
            raise ValueError("format=int4-cpu keeps each group's columns together; act_order=true "
                             "reorders them: leave one of the two out")


@dataclass(frozen=True)
class RTNConfig(Targeted):
    """Round-to-nearest b-bit integers, one scale (and zero point if asymmetric) per group."""

    MAIN_OPTION: ClassVar[str] = "bits"
    # in the identity only when set, so every artifact made before `format` existed keeps its key
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("format",)
    bits: int = 4  # bits per weight: 2, 3, 4 or 8
    group_size: int = 64  # input columns sharing a scale; 0 = one per output row (channel)
    sym: bool = True  # symmetric grid (no zero point)
    # compressed-tensors: packed for storage and export, dense for compute; int4-cpu: the same
    # integers in the CPU int4 kernel's layout (`int4.py`), computed packed, not exportable
    format: str = "compressed-tensors"
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        check_bits_and_group(self.bits, self.group_size)
        check_format(self)


@dataclass(frozen=True)
class GPTQConfig(Calibrated, Targeted):
    """GPTQ (Frantar et al. 2022) with the options AutoGPTQ exposed, plus the calibration set."""

    MAIN_OPTION: ClassVar[str] = "bits"
    # in the identity only when set, so every artifact made before `format` existed keeps its key
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("format",)
    bits: int = 4  # bits per weight: 2, 3, 4 or 8
    group_size: int = 64  # input columns sharing a scale; 0 = one per output row (channel)
    sym: bool = True  # symmetric grid (no zero point)
    act_order: bool = False  # quantize columns by decreasing Hessian diagonal (AutoGPTQ desc_act)
    damp: float = 0.01  # fraction of the mean Hessian diagonal added for stability
    block_size: int = 128  # columns per lazy batch update
    format: str = "compressed-tensors"  # or int4-cpu, as RTNConfig's
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        check_bits_and_group(self.bits, self.group_size)
        check_format(self)
        if not 0.0 < self.damp < 1.0:
            raise ValueError(f"damp must be in (0, 1), got {self.damp}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


def int_scheme(layers: dict[str, nn.Module], method: str, bits: int, group_size: int, sym: bool,
               actorder: str | None = None) -> dict:
    """A compressed-tensors config group for `layers`; checks the group size divides their
    input widths."""
    check_groups_fit(layers, group_size, method)
    weights = {"num_bits": bits, "type": "int", "symmetric": sym,
               "strategy": "group" if group_size else "channel"}
    if group_size:
        weights["group_size"] = group_size
    if actorder:
        weights["actorder"] = actorder
    return {"targets": target_names(layers), "weights": weights}


def zero_masks(layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Where each weight is exactly zero (pruned), for the layers that have any."""
    return {name: m.weight == 0 for name, m in layers.items() if bool((m.weight == 0).any())}


def pack_(model: nn.Module, layers: dict[str, nn.Module], masks: dict[str, torch.Tensor],
          decompress_on_forward: bool = True) -> dict:
    """Restore pruned zeros, pack the quantized layers in memory, and measure their bytes and
    the fraction of weights stored as exactly zero (pruned ones, and those that round to 0).
    compressed-tensors hooks the model to decompress (and offload) it at its first forward;
    `decompress_on_forward=False` removes that hook, for layers repacked for a kernel."""
    from compressed_tensors.compressors import ModelCompressor

    with torch.no_grad():
        for name, mask in masks.items():
            layers[name].weight.masked_fill_(mask, 0.0)
    fp16_bytes = sum(m.weight.numel() * 2 for m in layers.values())
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    if not decompress_on_forward:
        compressor.remove_decompression_hook(model)
    packed_bytes = sum(t.numel() * t.element_size()
                       for m in layers.values() for t in [*m.parameters(), *m.buffers()])
    unpacked = [dense_weight(m) for m in layers.values()]
    zeros = sum(int((w == 0).sum()) for w in unpacked)
    total = sum(w.numel() for w in unpacked)
    return {"quantized_layers": len(layers), "quantized_linear_bytes": packed_bytes,
            "fp16_linear_bytes": fp16_bytes, "linear_bytes_vs_fp16": packed_bytes / fp16_bytes,
            "sparsity": zeros / total}


def apply_rtn(model: nn.Module, config: RTNConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.quantization import QuantizationModifier

    layers = target_layers(model, config, "rtn")
    group = int_scheme(layers, "rtn", config.bits, config.group_size, config.sym)
    check_kernel_format(model, layers, config, "rtn")
    masks = zero_masks(layers)
    oneshot_(model, [QuantizationModifier(config_groups={"group_0": group})], "rtn", context)
    return StepOutput(model, pack_as_format(model, layers, masks, config, "rtn"))


def apply_gptq(model: nn.Module, config: GPTQConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.quantization import GPTQModifier

    layers = target_layers(model, config, "gptq")
    group = int_scheme(layers, "gptq", config.bits, config.group_size, config.sym,
                       actorder="group" if config.act_order else None)
    check_kernel_format(model, layers, config, "gptq")
    masks = zero_masks(layers)
    modifier = GPTQModifier(config_groups={"group_0": group}, dampening_frac=config.damp,
                            block_size=config.block_size)
    oneshot_(model, [modifier], "gptq", context, calibration=config)
    return StepOutput(model, pack_as_format(model, layers, masks, config, "gptq"))


def check_kernel_format(model: nn.Module, layers: dict[str, nn.Module], config, method: str) -> None:
    """With format=int4-cpu, the kernel's constraints before the quantization runs, not after."""
    if config.format == "int4-cpu":
        from compbench.compressors.int4 import check_kernel_fits

        check_kernel_fits(model, layers, config.group_size, method)


def pack_as_format(model: nn.Module, layers: dict[str, nn.Module], masks: dict[str, torch.Tensor], config,
            method: str) -> dict:
    """Pack the quantized layers; with format=int4-cpu, then repack them for the int4 kernel."""
    stats = pack_(model, layers, masks, decompress_on_forward=config.format != "int4-cpu")
    if config.format == "int4-cpu":
        from compbench.compressors.int4 import repack_int4_

        stats = {**stats, **repack_int4_(model, layers, config.group_size)}
    return stats


def exportable_format(config) -> bool:
    return config.format == "compressed-tensors"


def as_compressed_tensors(method: str):
    """`exported_as` of a method with `format`: the same step in compressed-tensors' format,
    whose integers, scales and zero points `format=int4-cpu` only repacks (in any load dtype)."""
    def twin(config, dtype: str) -> tuple[str, dict]:
        options = asdict(config)
        options.pop("version")
        options["format"] = "compressed-tensors"
        return method, options
    return twin


register_compressor(
    "rtn", RTNConfig, apply_rtn, kind="quantize", terminal=True, trainable=False, axes=("bits",),
    exportable=exportable_format, exported_as=as_compressed_tensors("rtn"),
    libraries=("llmcompressor", "compressed-tensors"),
    summary="round-to-nearest 2/3/4/8-bit integer weights in groups (the GPTQ baseline)",
)
register_compressor(
    "gptq", GPTQConfig, apply_gptq, kind="quantize", terminal=True, needs_calibration=True, axes=("bits",),
    exportable=exportable_format, exported_as=as_compressed_tensors("gptq"),
    trainable=False,
    libraries=("llmcompressor", "compressed-tensors"),
    summary="GPTQ 2/3/4/8-bit integer weights in groups, calibrated layer by layer",
)
