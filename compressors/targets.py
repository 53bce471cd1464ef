"""Which layers a method touches, chosen from the model's structure and the config's patterns.

By default a method compresses every linear layer inside the model's repeated blocks (decoder
or encoder layers): not the embeddings, not `lm_head`, not a task head. The blocks are found
from the module tree, never from a model name or a name regex, so the default holds for any
architecture. A config narrows or widens that set with `targets` (a regex over module names:
then every linear whose name matches) and `ignore` (a regex of names left alone), as
llm-compressor's `targets`/`ignore`, peft's `target_modules` and torchao's `filter_fn` do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from compbench.core.tensors import dense_weight, is_linear
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class Targeted:
    """Layer selection options shared by the methods that compress linear layers."""

    targets: str = ""  # regex of module names to compress; "" = every linear inside the blocks
    ignore: str = ""  # regex of module names left uncompressed (applied after `targets`)

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent:
            parent()
        for name in ("targets", "ignore"):
            try:
                re.compile(getattr(self, name))
            except re.error as exc:
                raise ValueError(f"{name} must be a regular expression: {exc}") from None


def find_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The model's repeated blocks by qualified name (`model.layers.0`, …): the ModuleList of
    modules of one class that holds the most parameters (so a block's own lists, e.g. MoE
    experts, never win over the list of blocks)."""
    best_name, best_size, best = None, -1, None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(member) for member in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best_name, best_size, best = name, size, module
    if best is None:
        raise CompbenchError(f"{type(model).__name__} has no list of repeated blocks (decoder or "
                             "encoder layers); give the layers to compress with targets=<regex>")
    return {f"{best_name}.{i}": block for i, block in enumerate(best)}


def exact_pattern(names) -> str:
    """A `targets` pattern matching exactly these module names (to compress a chosen subset)."""
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def linear_layers(model: nn.Module, selection: Targeted | None = None) -> dict[str, nn.Module]:
    """Linear-like modules (plain or quantized) selected by `selection` (default: the blocks' linears)."""
    if selection is not None and selection.targets:
        regex = re.compile(selection.targets)
        chosen = {n: m for n, m in model.named_modules() if is_linear(m) and regex.search(n)}
    else:
        prefixes = tuple(name + "." for name in find_blocks(model))
        chosen = {n: m for n, m in model.named_modules() if is_linear(m) and n.startswith(prefixes)}
    if selection is not None and selection.ignore:
        regex = re.compile(selection.ignore)
        chosen = {n: m for n, m in chosen.items() if not regex.search(n)}
    return chosen


def block_of(name: str, blocks) -> str:
    """The block holding module `name` (the name itself for a module outside every block)."""
    return next((block for block in blocks if name.startswith(block + ".")), name)


def sparsity_of(layers: dict[str, nn.Module]) -> float:
    """Fraction of exactly-zero weights over these layers."""
    zeros = total = 0
    for module in layers.values():
        weight = dense_weight(module)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0



def target_layers(model: nn.Module, selection: Targeted, method: str) -> dict[str, nn.Module]:
    """The layers a step compresses; none is an error naming the selection."""
    layers = linear_layers(model, selection)
    if not layers:
        chosen = f"targets='{selection.targets}'" if selection.targets else "the default targets"
        ignored = f", ignore='{selection.ignore}'" if selection.ignore else ""
        raise CompbenchError(f"{method}: no linear layer matches {chosen}{ignored}")
    return layers


def check_groups_fit(layers: dict[str, nn.Module], group_size: int, method: str) -> None:
    """Every layer's input width a multiple of `group_size` (0: one group per row), else an
    error naming the first layer that does not fit."""
    for name, module in layers.items() if group_size else ():
        if module.in_features % group_size:
            raise CompbenchError(f"{method}: group_size={group_size} does not divide the input "
                                 f"width {module.in_features} of {name}; use a divisor (e.g. 64 or 32)")
