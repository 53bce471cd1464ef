"""The compressor registry: one entry per method name, registered explicitly by its module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

ApplyFn = Callable[[Any, Any, "CompressionContext"], "StepOutput"]


@dataclass
class CompressionContext:
    """What a step may need beside the model and its config: the tokenizer, and a function that
    returns a named calibration corpus as a list of texts (handed in, so compressors read no
    datasets themselves)."""

    tokenizer: Any = None
    calibration_text: Callable[[str], list[str]] | None = None


@dataclass
class StepOutput:
    """What one compression step returns: the (possibly new) model and what it measured."""

    model: Any
    stats: dict[str, Any]


@dataclass(frozen=True)
class Compressor:
    """A registered method: its config class, its apply step, and how it composes."""

    name: str
    config_cls: type
    apply: ApplyFn
    # transform: rewrites float weights keeping the model's function (rotations, smoothing),
    # to make the quantizer that follows it lose less
    kind: Literal["cast", "prune", "quantize", "transform"]
    # Quantizers that replace Linear layers by packed ones end a recipe: nothing can follow.
    terminal: bool = False
    # Whether `save_pretrained` writes a checkpoint that stock `from_pretrained` reloads; a
    # predicate on the config where that depends on the options.
    exportable: bool | Callable[[Any], bool] = True
    # Whether the step reads calibration data; a predicate where that depends on the options.
    needs_calibration: bool | Callable[[Any], bool] = False
    # Whether peft can train a LoRA adapter over the layers it leaves (float or bitsandbytes).
    trainable: bool | Callable[[Any], bool] = True
    # Libraries whose code writes the compressed weights: their versions are part of the identity.
    libraries: tuple[str, ...] = ()
    summary: str = ""
    # The config fields a study sweeps this method along, for reports: ("sparsity",) puts a
    # pruning method in the method x sparsity tables, ("bits",) a quantizer in the bit-width
    # table, ("heads", "ffn") a structured method in the plots against the width kept.
    axes: tuple[str, ...] = ()
    # For a step whose own result does not save (a CPU kernel's layout): given its config and
    # the load dtype, the step whose stock checkpoint holds the same integers and scales, as
    # (method, options), or None where no such step exists for these options (or a
    # CompbenchError saying why not). `compbench export` writes that one.
    exported_as: Callable[[Any, str], tuple[str, dict[str, Any]] | None] | None = None

    def can_export(self, config: Any) -> bool:
        """Whether this step, with these options, leaves a model stock `from_pretrained` reloads."""
        return self.exportable(config) if callable(self.exportable) else self.exportable

    def can_train(self, config: Any) -> bool:
        """Whether a LoRA adapter can be trained on this step's result, with these options."""
        return self.trainable(config) if callable(self.trainable) else self.trainable

    def uses_calibration(self, config: Any) -> bool:
        """Whether this step, with these options, reads calibration data."""
        needs = self.needs_calibration
        return needs(config) if callable(needs) else needs

    def defaults(self) -> dict[str, Any]:
        """Each option's default, read from the config's fields (a config may refuse to be built
        with no options at all, e.g. structured pruning with nothing to remove)."""
        return {f.name: f.default for f in fields(self.config_cls) if f.name != "version"}

    def option_names(self) -> list[str]:
        """The recipe keys this method accepts (every config field except `version`)."""
        return [f.name for f in fields(self.config_cls) if f.name != "version"]


COMPRESSORS: dict[str, Compressor] = {}


def register_compressor(
    name: str,
    config_cls: type,
    apply: ApplyFn,
    *,
    kind: Literal["cast", "prune", "quantize", "transform"],
    terminal: bool = False,
    exportable: bool | Callable[[Any], bool] = True,
    needs_calibration: bool | Callable[[Any], bool] = False,
    trainable: bool | Callable[[Any], bool] = True,
    libraries: tuple[str, ...] = (),
    summary: str = "",
    axes: tuple[str, ...] = (),
    exported_as: Callable[[Any, str], tuple[str, dict[str, Any]] | None] | None = None,
) -> None:
    """Register a method under `name`; names are lowercase identifiers and unique, and each of
    its report `axes` is a field of its config."""
    if not name.replace("-", "").replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"compressor name must be a lowercase identifier, got {name!r}")
    if name in COMPRESSORS:
        raise ValueError(f"compressor {name!r} is already registered")
    if not any(f.name == "version" for f in fields(config_cls)):
        raise ValueError(f"{config_cls.__name__} needs a `version` field")
    unknown = [axis for axis in axes if axis not in {f.name for f in fields(config_cls)}]
    if unknown:
        raise ValueError(f"{name}: report axes {unknown} are not fields of {config_cls.__name__}")
    COMPRESSORS[name] = Compressor(name, config_cls, apply, kind, terminal, exportable,
                                   needs_calibration, trainable, libraries, summary, axes, exported_as)
