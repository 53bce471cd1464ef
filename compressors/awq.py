"""AWQ (Lin et al. 2024): activation-aware scaling of weight channels before 4-bit rounding.

The input channels that carry large activations matter most. For each group of layers fed by
one activation (q/k/v after the attention norm, gate/up after the MLP norm, down after up, o
after v where the widths match), AWQ multiplies the layers' input columns by s = mean|x|^alpha
and divides the activation's producer (the norm's weight, or the previous linear's output rows)
by s, so the float model computes the same function while the salient channels round with
less relative error. alpha is chosen on a grid of `n_grid` points in [0, 1] to minimize the
paper's objective, the layers' output error ||Q(W diag(s)) diag(s)^-1 X - W X||^2 over the
calibration tokens (alpha = 0 is plain round-to-nearest, so AWQ never scores worse than RTN
on it). Then, as AutoAWQ's `auto_clip`, each group of each layer (but the attention's query and
key projections, whose error the softmax reshapes) keeps its weights within max|w| x (1 - r),
r on a grid in [0, 0.5), the r whose rounding gives the group's least output error (r = 0 is
no clipping). The weights are then rounded exactly as `rtn` rounds them (llm-compressor, packed
compressed-tensors, exportable), or with `format=int4-cpu` repacked for the CPU int4 kernel.

Why not llm-compressor's AWQModifier: in 0.14 its grid search pins the cached activations in
page-locked memory unconditionally (`IntermediatesCache.pin_memory`), which raises "Cannot
access accelerator device when none is available" on a machine without one. So the scale
search is written here, on one statistic per activation: the objective only needs the Gram
matrix H = X^T X (error = trace(E H E^T), E the weight error), collected in one pass of the
dense model (scaling keeps the function, so every layer sees the dense model's inputs, divided
by s where s was folded in); a group's clipping error is its block of H. Which activations feed
which layers is llm-compressor's AWQ mapping table for the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from tqdm import tqdm

from compbench.compressors.calibration import Calibrated, calibration_ids, collect_inputs
from compbench.compressors.gptq import (
    as_compressed_tensors,
    check_bits_and_group,
    check_format,
    check_kernel_format,
    exportable_format,
    int_scheme,
    pack_as_format,
    zero_masks,
)
from compbench.compressors.llmc import oneshot_
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, find_blocks, target_layers
from compbench.errors import CompbenchError

MAX_SHRINK = 0.5  # the most of a group's range the clipping search cuts (AutoAWQ's max_shrink)
# not clipped: the attention scores' inputs, whose error the softmax reshapes (as AutoAWQ)
UNCLIPPED = ("q_proj", "k_proj")


@dataclass(frozen=True)
class AWQConfig(Calibrated, Targeted):
    """Bits and groups of the rounding that follows, the scale grid, and the calibration set."""

    MAIN_OPTION: ClassVar[str] = "bits"
    KEYED_WHEN_SET: ClassVar[tuple[str, ...]] = ("format",)  # as rtn's and gptq's
    bits: int = 4  # bits per weight: 2, 3, 4 or 8
    group_size: int = 64  # input columns sharing a scale; 0 = one per output row (channel)
    sym: bool = False  # symmetric grid; AWQ's checkpoints use a zero point (asymmetric)
    n_grid: int = 20  # alpha values tried in [0, 1] (the paper's 20), and clip steps of 1/n_grid
    clip: bool = True  # search each group's clipping range after scaling (AutoAWQ's auto_clip)
    # compressed-tensors: packed for storage and export; int4-cpu: the same integers in the CPU
    # int4 kernel's layout (as rtn's and gptq's), computed packed, not exportable
    format: str = "compressed-tensors"
    version: int = 2  # bump when the method's behaviour changes (2: the clipping search)

    def __post_init__(self):
        super().__post_init__()
        check_bits_and_group(self.bits, self.group_size)
        check_format(self)
        if self.n_grid < 2:
            raise ValueError(f"n_grid must be >= 2, got {self.n_grid}")


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int, sym: bool) -> torch.Tensor:
    """Round-to-nearest in groups along the input dimension, back in float (min-max scales)."""
    rows, columns = weight.shape
    groups = weight.reshape(rows, -1, group_size or columns)
    if sym:
        top = 2 ** (bits - 1) - 1
        scale = groups.abs().amax(-1, keepdim=True).clamp(min=1e-8) / top
        levels = (groups / scale).round().clamp(-top - 1, top)
        return (levels * scale).reshape(rows, columns)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((high - low) / (2**bits - 1)).clamp(min=1e-8)
    zero = (-low / scale).round()
    levels = ((groups / scale).round() + zero).clamp(0, 2**bits - 1)
    return ((levels - zero) * scale).reshape(rows, columns)


def output_error(weight: torch.Tensor, quantized: torch.Tensor, gram: torch.Tensor) -> float:
    """sum over tokens of ||(Q - W) x||^2, from the inputs' Gram matrix H = X^T X."""
    error = quantized - weight
    return float(((error @ gram) * error).sum())


def best_scales(weight: torch.Tensor, gram: torch.Tensor, x_mean: torch.Tensor,
                config: AWQConfig) -> tuple[torch.Tensor, float]:
    """The per-column scale s = x_mean^alpha (normalized) minimizing the rounded layers' output
    error, and its alpha."""
    best, best_alpha, best_error = torch.ones_like(x_mean), 0.0, float("inf")
    for alpha in torch.linspace(0, 1, config.n_grid).tolist():
        scales = x_mean.pow(alpha).clamp(min=1e-4)
        scales = scales / (scales.max() * scales.min()).sqrt()
        quantized = fake_quantize(weight * scales, config.bits, config.group_size, config.sym) / scales
        error = output_error(weight, quantized, gram)
        if error < best_error:
            best, best_alpha, best_error = scales, alpha, error
    return best, best_alpha


def group_errors(error: torch.Tensor, gram: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per output row and input group: sum over tokens of (e_g . x_g)^2, each group's own output
    error, from the diagonal blocks of H = X^T X; [rows, groups]."""
    rows, columns = error.shape
    size = group_size or columns
    blocks = torch.stack([gram[i:i + size, i:i + size] for i in range(0, columns, size)])
    groups = error.reshape(rows, -1, size)
    return torch.einsum("rgi,gij,rgj->rg", groups, blocks, groups)


def best_clip(weight: torch.Tensor, gram: torch.Tensor, config: AWQConfig) -> torch.Tensor:
    """Per row and group, the clipping bound max|w| x (1 - r) for r = 0, 1/n_grid, ... below
    MAX_SHRINK whose rounding gives the group's least output error; [rows, groups, 1]."""
    rows, columns = weight.shape
    groups = weight.reshape(rows, -1, config.group_size or columns)
    top = groups.abs().amax(-1, keepdim=True)
    best, best_error = top.clone(), torch.full(top.shape[:2], float("inf"))
    for step in range(int(MAX_SHRINK * config.n_grid)):
        bound = top * (1 - step / config.n_grid)
        clipped = torch.maximum(torch.minimum(groups, bound), -bound).reshape(rows, columns)
        quantized = fake_quantize(clipped, config.bits, config.group_size, config.sym)
        error = group_errors(quantized - weight, gram, config.group_size)
        better = error < best_error
        best_error[better], best[better] = error[better], bound[better]
    return best


def clip_(layer: nn.Module, bounds: torch.Tensor) -> float:
    """Clamp each group of the layer's weight to +-its bound; the mean fraction of range cut."""
    with torch.no_grad():
        weight = layer.weight
        groups = weight.reshape(weight.shape[0], bounds.shape[1], -1)
        top = groups.abs().amax(-1, keepdim=True)
        bounds = bounds.to(weight.dtype)
        groups.copy_(torch.maximum(torch.minimum(groups, bounds), -bounds))
    return float((1 - bounds.float() / top.float().clamp(min=1e-12)).mean())


Mapping = tuple[str, nn.Module, list[str]]  # producer name, producer, names of the layers it feeds


def resolve_mappings(model: nn.Module, layers: dict[str, nn.Module]) -> list[Mapping]:
    """(producer name, producer, names of the target layers it feeds) in every block, from
    llm-compressor's AWQ table; a mapping whose widths differ (v -> o under grouped-query
    attention) or that feeds no target is left out, as llm-compressor leaves it."""
    from compressed_tensors.utils import match_named_modules
    from llmcompressor.modifiers.transform.awq.mappings import AWQ_MAPPING_REGISTRY, default_mappings

    mappings = AWQ_MAPPING_REGISTRY.get(type(model).__name__, default_mappings)
    resolved = []
    for block_name, block in find_blocks(model).items():
        for mapping in mappings:
            smooth = list(match_named_modules(block, [mapping.smooth_layer]))
            balance = [f"{block_name}.{name}"
                       for name, _ in match_named_modules(block, mapping.balance_layers)]
            balance = [name for name in balance if name in layers]
            if len(smooth) != 1 or not balance:
                continue
            name, producer = smooth[0]
            width = producer.weight.shape[0]
            if any(layers[b].in_features != width for b in balance):
                continue
            resolved.append((f"{block_name}.{name}", producer, balance))
    return resolved


def input_statistics(model: nn.Module, first_layers: dict[str, nn.Module], ids: torch.Tensor
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: the Gram matrix X^T X and mean |x| of its inputs over the calibration rows."""
    grams: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}

    def accumulate(name: str, x: torch.Tensor) -> None:
        grams[name] = grams.get(name, 0) + x.T @ x
        sums[name] = sums.get(name, 0) + x.abs().sum(0)

    collect_inputs(model, first_layers, ids, accumulate, "awq: activation statistics")
    return {name: (grams[name], sums[name] / ids.numel()) for name in grams}


def scale_(producer: nn.Module, balance: list[nn.Module], scales: torch.Tensor) -> None:
    """Divide the producer's output by s and multiply the layers' input columns by s; checks
    that a norm producer really scales its output by its weight (a (1 + weight) norm does not)."""
    with torch.no_grad():
        if isinstance(producer, nn.Linear):
            producer.weight.div_(scales.view(-1, 1).to(producer.weight.dtype))
            if producer.bias is not None:
                producer.bias.div_(scales.to(producer.bias.dtype))
        else:
            probe = torch.randn(1, scales.numel(), dtype=producer.weight.dtype, device=producer.weight.device)
            before = producer(probe)
            producer.weight.div_(scales.to(producer.weight.dtype))
            if not torch.allclose(producer(probe) * scales.to(before.dtype), before, rtol=1e-3, atol=1e-5):
                raise CompbenchError(f"awq: {type(producer).__name__} does not scale its output by "
                                     "its weight, so AWQ cannot fold its scales into it")
            if getattr(producer, "bias", None) is not None:
                producer.bias.div_(scales.to(producer.bias.dtype))
        for layer in balance:
            layer.weight.mul_(scales.view(1, -1).to(layer.weight.dtype))


def apply(model: nn.Module, config: AWQConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.quantization import QuantizationModifier

    layers = target_layers(model, config, "awq")
    group = int_scheme(layers, "awq", config.bits, config.group_size, config.sym)
    check_kernel_format(model, layers, config, "awq")
    mappings = resolve_mappings(model, layers)
    if not mappings:
        raise CompbenchError(f"awq: no activation of {type(model).__name__} feeds the target layers "
                             "in llm-compressor's AWQ mappings; use gptq or rtn")
    clipped = [name for name in layers if config.clip and not name.endswith(UNCLIPPED)]
    fed = {name for _, _, balance in mappings for name in balance}
    inputs = {balance[0]: layers[balance[0]] for _, _, balance in mappings}
    inputs.update({name: layers[name] for name in clipped if name not in fed})  # o_proj under GQA
    statistics = input_statistics(model, inputs, calibration_ids(context, config))
    alphas, grams = {}, {name: statistics[name][0] for name in inputs if name not in fed}
    for producer_name, producer, balance in tqdm(mappings, desc="awq: scale search", leave=False):
        gram, x_mean = statistics.pop(balance[0])
        weight = torch.cat([layers[name].weight.detach().float() for name in balance])
        scales, alphas[producer_name] = best_scales(weight, gram, x_mean, config)
        scale_(producer, [layers[name] for name in balance], scales)
        if config.clip:  # the scaled layers' inputs are x / s
            scaled = gram / (scales.view(-1, 1) * scales.view(1, -1))
            grams.update(dict.fromkeys(balance, scaled))
    cuts = [clip_(layers[name], best_clip(layers[name].weight.detach().float(), grams[name], config))
            for name in tqdm(clipped, desc="awq: clipping search", leave=False)]
    masks = zero_masks(layers)
    oneshot_(model, [QuantizationModifier(config_groups={"group_0": group})], "awq", context)
    stats = pack_as_format(model, layers, masks, config, "awq")
    clipping = {"clipped_layers": len(cuts), "mean_range_cut": sum(cuts) / len(cuts)} if cuts else {}
    return StepOutput(model, {**stats, "scaled_mappings": len(alphas),
                              "mean_alpha": sum(alphas.values()) / len(alphas), **clipping})


register_compressor(
    "awq", AWQConfig, apply, kind="quantize", terminal=True, needs_calibration=True, axes=("bits",),
    trainable=False, exportable=exportable_format, exported_as=as_compressed_tensors("awq"),
    libraries=("llmcompressor", "compressed-tensors"),
    summary="AWQ: activation-aware channel scales and clipping ranges, then 2/3/4/8-bit integer weights"
            " in groups",
)
