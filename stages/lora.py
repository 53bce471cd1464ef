"""LoRA adapters on a (compressed) base with peft: which layers, whether they can be trained.

peft trains a low-rank update beside a frozen base layer; it does so for float `nn.Linear` and
bitsandbytes' `Linear8bitLt` / `Linear4bit` (QLoRA). Packed GPTQ/RTN layers, torch dynamic
int8 and torchao tensor-subclass weights are refused here with one line, before peft would
fail deep inside (or, for `all-linear`, silently skip them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from compbench.compressors.bnb import disable_cpu_bf16_repack_
from compbench.compressors.targets import linear_layers
from compbench.core.tensors import is_linear, is_tensor_subclass
from compbench.errors import CompbenchError

ALL_LINEAR = "all-linear"
BNB_LAYERS = ("Linear8bitLt", "Linear4bit")


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: rank, scale, dropout and the layers it sits on."""

    r: int = 16  # rank of the update B @ A
    alpha: float = 32.0  # the update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapter's input
    target_modules: str = ALL_LINEAR  # "all-linear" (every Linear in the blocks) or names: q_proj,v_proj
    version: int = 1  # bump when adapters built from these settings change

    def __post_init__(self):
        if self.r < 1:
            raise CompbenchError(f"LoRA r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise CompbenchError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise CompbenchError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules.strip(", "):
            raise CompbenchError("LoRA target modules are empty; give all-linear or layer names, "
                                 "e.g. q_proj,v_proj")

    def as_dict(self) -> dict:
        return asdict(self)


def trainable(module: nn.Module) -> bool:
    """Whether peft can train an adapter over this base layer (see the module doc)."""
    if type(module) is nn.Linear:
        return not hasattr(module, "weight_packed") and not is_tensor_subclass(module.weight)
    kind = type(module)
    return kind.__name__ in BNB_LAYERS and kind.__module__.startswith("bitsandbytes")


def select_layers(model: nn.Module, target_modules: str) -> dict[str, nn.Module]:
    """The layers the adapter wraps, by qualified name: every Linear inside the repeated blocks
    for `all-linear` (never the LM or task head), else those whose last name part is listed; a
    listed name the model lacks is an error. Works on a model on the meta device (no weights)."""
    if target_modules == ALL_LINEAR:
        chosen = linear_layers(model)
    else:
        wanted = [n.strip() for n in target_modules.split(",") if n.strip()]
        linears = {name: module for name, module in model.named_modules() if is_linear(module)}
        present = sorted({name.rpartition(".")[2] for name in linears})
        missing = [n for n in wanted if n not in present]
        if missing:
            raise CompbenchError(f"LoRA target module(s) {', '.join(missing)} not in the model; its "
                                 f"linear layers are named: {', '.join(present)} (or use all-linear)")
        chosen = {name: m for name, m in linears.items() if name.rpartition(".")[2] in wanted}
    return chosen


def target_layers(model: nn.Module, target_modules: str) -> dict[str, nn.Module]:
    """`select_layers`, each checked to be a layer peft can train."""
    chosen = select_layers(model, target_modules)
    frozen = {name: m for name, m in chosen.items() if not trainable(m)}
    if frozen:
        name, module = next(iter(frozen.items()))
        kind = _describe(module)
        raise CompbenchError(
            f"the base's {kind} layers ({name} and {len(frozen) - 1} more) cannot "
            "carry a LoRA adapter: peft trains float or bitsandbytes layers; fine-tune an fp32/bf16, "
            "pruned, int8, nf4, fp4 or mixed:…:method=bnb base")
    return chosen


def _describe(layer: nn.Module) -> str:
    """What kind of layer a quantizer left, in a user's words."""
    if hasattr(layer, "weight_packed"):
        return "packed GPTQ/RTN (compressed-tensors)"
    if isinstance(layer, nn.Linear) and is_tensor_subclass(layer.weight):
        return f"torchao {type(layer.weight).__name__}"
    return f"{type(layer).__module__.split('.modules')[0]}.{type(layer).__name__}"


def attach_lora(model: nn.Module, settings: LoraSettings, task_type: str, seed: int):
    """The base wrapped in a peft LoRA model (adapter weights initialised from `seed`); a task
    head (`score`) is trained in full beside the adapter (peft's `modules_to_save`)."""
    import torch
    from peft import LoraConfig, get_peft_model

    layers = target_layers(model, settings.target_modules)
    disable_cpu_bf16_repack_(model)  # training, and every later load of the adapter, use the exact path
    for param in model.parameters():
        param.requires_grad_(False)
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=sorted(layers), task_type=task_type)
    torch.manual_seed(seed)
    return get_peft_model(model, config)
