"""Per-layer mixed 4/8-bit integer quantization under a bit budget (the research's "dynamic adaptive hybrid").

Each decoder block's sensitivity to 4-bit is measured (perplexity on calibration text with that
block alone rounded to 4 bits: `sensitivity.py`). All blocks start at 4 bits; the most
sensitive are raised to 8 bits, in order, while the parameter-weighted mean stays within
`budget_bits`. The two groups are then quantized by `method`:

- `rtn` / `gptq`: integers in groups of `group_size`, in the packed format of `gptq` / `rtn`
  (sensitivity probed with RTN 4-bit); exports and reloads with stock `from_pretrained`.
- `bnb`: bitsandbytes layers, NF4 (blocks of 64) for the 4-bit blocks and LLM.int8() for the
  8-bit ones (sensitivity probed with NF4). transformers' `BitsAndBytesConfig` holds one
  bit-width per model, so the 8-bit layers are swapped in by hand; the result runs and is
  measured like any other, but stock `from_pretrained` cannot reload the mix: not exportable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from compbench.compressors.calibration import Calibrated
from compbench.compressors.gptq import int_scheme, pack_, zero_masks
from compbench.compressors.llmc import oneshot_
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.compressors.targets import Targeted, exact_pattern, target_layers

METHODS = ("rtn", "gptq", "bnb")
LOW_BITS, HIGH_BITS = 4, 8


@dataclass(frozen=True)
class MixedConfig(Calibrated, Targeted):
    """Bit budget, quantizer and group size; calibration options are GPTQ's."""

    MAIN_OPTION: ClassVar[str] = "budget_bits"
    budget_bits: float = 5.0  # mean bits per target weight, in [4, 8]
    method: str = "rtn"  # rtn, gptq or bnb
    group_size: int = 64  # input columns sharing a scale, both bit-widths (rtn / gptq)
    sym: bool = True  # symmetric grid (rtn / gptq)
    sensitivity_samples: int = 4  # calibration windows the 4-bit sensitivity is measured on
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        super().__post_init__()
        if not LOW_BITS <= self.budget_bits <= HIGH_BITS:
            raise ValueError(f"budget_bits must be in [{LOW_BITS}, {HIGH_BITS}], got {self.budget_bits}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.group_size < 0:
            raise ValueError(f"group_size must be >= 0, got {self.group_size}")
        if self.method == "bnb" and (self.group_size != 64 or not self.sym):
            raise ValueError("group_size and sym apply to method=rtn or gptq; bnb uses NF4 "
                             "(blocks of 64) and LLM.int8() (one scale per row)")
        if self.sensitivity_samples < 1:
            raise ValueError(f"sensitivity_samples must be >= 1, got {self.sensitivity_samples}")


def assign_bits(sizes: dict[str, int], sensitivity: dict[str, float], budget_bits: float) -> dict[str, int]:
    """8 bits for the most sensitive units, in order, while the size-weighted mean stays in budget."""
    bits = dict.fromkeys(sizes, LOW_BITS)
    total = sum(sizes.values())
    used = LOW_BITS * total
    for unit in sorted(sizes, key=lambda u: (-sensitivity[u], u)):
        extra = (HIGH_BITS - LOW_BITS) * sizes[unit]
        if used + extra > budget_bits * total:
            break
        bits[unit] = HIGH_BITS
        used += extra
    return bits


def apply(model: nn.Module, config: MixedConfig, context: CompressionContext) -> StepOutput:
    from compbench.compressors.recipe import make_step
    from compbench.compressors.sensitivity import measure_sensitivity, units_of

    layers = target_layers(model, config, "mixed")
    if config.method == "bnb":
        probe = make_step("nf4", {})
    else:
        int_scheme(layers, "mixed", LOW_BITS, config.group_size, config.sym)  # checks the group size
        probe = make_step("rtn", {"bits": LOW_BITS, "group_size": config.group_size,
                                  "sym": config.sym})
    probe_calibration = Calibrated(config.calibration, config.sensitivity_samples, config.seqlen,
                                   config.seed)
    delta = measure_sensitivity(model, context, probe, "block", probe_calibration,
                                selection=config).delta()
    units = units_of(model, "block", config)
    sizes = {u: sum(layers[n].weight.numel() for n in members) for u, members in units.items()}
    bits = assign_bits(sizes, delta, config.budget_bits)
    members = {width: {n: layers[n] for u in units if bits[u] == width for n in units[u]}
               for width in (LOW_BITS, HIGH_BITS)}
    if config.method == "bnb":
        model, stats = _bnb_mixed(model, members[LOW_BITS], members[HIGH_BITS], context)
    else:
        stats = _integer_mixed(model, layers, members, config, context)
    stats["mean_bits"] = sum(bits[u] * sizes[u] for u in units) / sum(sizes.values())
    stats["blocks_8bit"] = [u for u in units if bits[u] == HIGH_BITS]
    return StepOutput(model, stats)


def _integer_mixed(model: nn.Module, layers: dict[str, nn.Module], members: dict[int, dict],
                   config: MixedConfig, context: CompressionContext) -> dict:
    """Both groups in one llm-compressor pass (GPTQ or RTN), then packed."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    groups = {f"group_{width}bit": int_scheme(group, "mixed", width, config.group_size, config.sym)
              for width, group in members.items() if group}
    masks = zero_masks(layers)
    if config.method == "gptq":
        oneshot_(model, [GPTQModifier(config_groups=groups)], "mixed", context, calibration=config)
    else:
        oneshot_(model, [QuantizationModifier(config_groups=groups)], "mixed", context)
    return pack_(model, layers, masks)


def _bnb_mixed(model: nn.Module, four_bit: dict, eight_bit: dict,
               context: CompressionContext) -> tuple[nn.Module, dict]:
    """NF4 through transformers' loader for the 4-bit layers, then LLM.int8() swapped in by hand."""
    from compbench.compressors.bnb import NF4Config, apply_4bit, swap_to_int8_

    if four_bit:
        model = apply_4bit(model, NF4Config(targets=exact_pattern(four_bit)), context).model
    swap_to_int8_(model, list(eight_bit))
    return model, {"quantized_layers": len(four_bit) + len(eight_bit),
                   "layers_4bit": len(four_bit), "layers_8bit": len(eight_bit)}


register_compressor(
    "mixed", MixedConfig, apply, kind="quantize", terminal=True, needs_calibration=True,
    libraries=("bitsandbytes", "llmcompressor", "compressed-tensors"),
    exportable=lambda config: config.method != "bnb",
    trainable=lambda config: config.method == "bnb",
    summary="per-block 4/8-bit weights (packed integers or bitsandbytes) under a bit budget, "
            "by measured sensitivity",
)
