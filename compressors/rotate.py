"""Hadamard rotations before low-bit quantization (QuaRot / SpinQuant's R1 and R2).

An orthogonal rotation Q of the residual stream (R1: embeddings, every layer's input and output
projections, the head) or of each attention head's values (R2: v_proj and o_proj) leaves the
model's function unchanged, Wx = (WQ^T)(Qx), but spreads outlier channels over all channels, so
the rotated weights round to fewer bits with less error: `rotate+rtn:4`, `rotate+gptq:4`.
Both rotations are fused into the weights (nothing runs at inference time), so the result is a
plain dense model. Runs through llm-compressor's SpinQuantModifier with randomized Hadamard
matrices (its deterministic ones need a power-of-two width; SmolLM2's is 576 = 36 x 16), from
its fixed default generator, so a recipe gives the same rotation every time. The online
rotations R3/R4 are not offered: they add a transform to every forward pass and do not save
with stock transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from compbench.compressors.llmc import drop_compressed_save, oneshot_
from compbench.compressors.registry import CompressionContext, StepOutput, register_compressor
from compbench.errors import CompbenchError

ROTATIONS = ("r1", "r2", "r1r2")


@dataclass(frozen=True)
class RotateConfig:
    """Which offline rotations: r1 (residual stream), r2 (attention values per head), or both."""

    MAIN_OPTION: ClassVar[str] = "rotations"
    rotations: str = "r1r2"  # r1, r2 or r1r2
    version: int = 1  # bump when the method's behaviour changes

    def __post_init__(self):
        if self.rotations not in ROTATIONS:
            raise ValueError(f"rotations must be one of {', '.join(ROTATIONS)}, got '{self.rotations}'")

    def names(self) -> list[str]:
        """llm-compressor's spelling: ["R1", "R2"]."""
        return [f"R{digit}" for digit in self.rotations[1::2]]


def check_hadamard(model: nn.Module, config: RotateConfig) -> None:
    """Each rotated width needs a Hadamard matrix: a known order (compressed-tensors ships orders
    4k up to 256) times a power of two."""
    from compressed_tensors.transform.utils.hadamard import random_hadamard_matrix

    text = model.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    widths = {"r1": ("hidden size", text.hidden_size), "r2": ("head size", head_dim)}
    for rotation in ("r1", "r2"):
        if rotation not in config.rotations:
            continue
        what, width = widths[rotation]
        try:
            random_hadamard_matrix(width)
        except ValueError:
            raise CompbenchError(
                f"rotate: the model's {what} {width} has no Hadamard matrix (widths are a known "
                f"order 1, 2 or a multiple of 4 up to 256, times a power of two); "
                f"rotations={'r2' if rotation == 'r1' else 'r1'} leaves that width alone") from None


def apply(model: nn.Module, config: RotateConfig, context: CompressionContext) -> StepOutput:
    from llmcompressor.modifiers.transform import SpinQuantModifier

    check_hadamard(model, config)
    oneshot_(model, [SpinQuantModifier(rotations=config.names(), transform_type="random-hadamard")],
             "rotate", context)
    drop_compressed_save(model)  # the rotations are fused: stock save_pretrained
    return StepOutput(model, {"rotations": config.names()})


register_compressor(
    "rotate", RotateConfig, apply, kind="transform",
    libraries=("llmcompressor", "compressed-tensors"),
    summary="Hadamard rotations fused into the weights (QuaRot/SpinQuant R1, R2) before rtn/gptq",
)
