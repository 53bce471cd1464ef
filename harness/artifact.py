"""Build a compressed model and say exactly what it is: `build(preset, recipe) -> Artifact`.

An artifact's identity is everything that determines its weights: the source's content (the
GGUF's or the checkpoint files' sha256, or a hub id and revision), the load dtype and device
kind, the canonical recipe with every step's full config and `version`, the calibration data
files' sha256, and the versions of the libraries that write the weights. Spellings that parse
to one recipe (`gptq:4`, `gptq:bits=4`) give one identity; its digest is the artifact key.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass
from typing import Any

from torch import nn

from compbench.compressors import COMPRESSORS, CompressionResult, Recipe, compress, parse_recipe
from compbench.compressors.registry import CompressionContext
from compbench.core.io import digest_of, sha256_file
from compbench.harness.baseline_check import BaselineCheck, cached_check, check_baseline
from compbench.harness.store import ModelStore, storable
from compbench.model_zoo.presets import (
    Preset,
    choose_device,
    device_kind,
    get_preset,
    load_model,
    resolve_dtype,
    source_identity,
)

ALWAYS_LIBRARIES = ("torch", "transformers")  # every load and every compressor runs on them


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions(names) -> dict[str, str | None]:
    """The installed version of each named distribution (None where it is not installed)."""
    return {name: _version(name) for name in names}


def artifact_identity(preset: Preset, recipe: Recipe, dtype: str | None, device: str,
                      num_labels: int | None = None) -> dict[str, Any]:
    """The identity of `preset` compressed by `recipe` (see the module doc), with its `key`;
    with `num_labels`, of the sequence classifier with a fresh head of that many classes."""
    from compbench.tasks.calibration import calibration_file

    steps = [(step, COMPRESSORS[step.method]) for step in recipe.steps]
    calibrated = [step.config for step, compressor in steps if compressor.uses_calibration(step.config)]
    libraries = sorted({*ALWAYS_LIBRARIES, *(name for _, c in steps for name in c.libraries)})
    identity = {
        "source": {"preset": preset.name, **source_identity(preset)},
        "dtype": resolve_dtype(dtype, preset, device),
        "device_kind": device_kind(device),
        "recipe": recipe.as_dict(),
        "calibration": calibrated[0].calibration_record() if calibrated else None,
        "calibration_data": {c.calibration: sha256_file(calibration_file(c.calibration))
                             for c in calibrated},
        "libraries": library_versions(libraries),
    }
    if dtype == "auto":  # chosen here: bfloat16 where this device computes in it natively
        identity["dtype_auto"] = True
    if num_labels is not None:
        identity["head"] = {"kind": "sequence-classification", "num_labels": num_labels}
    return {"key": digest_of(identity), **identity}


@dataclass
class Artifact:
    """A compressed model in memory with its tokenizer, what compression measured, and its identity."""

    model: nn.Module
    tokenizer: Any
    preset: Preset
    recipe: Recipe
    compression: CompressionResult
    identity: dict[str, Any]
    device: str
    origin: str = "compressed"  # or "compressed, stored", "loaded from store"
    checkpoint_bytes: int | None = None  # the stored checkpoint's bytes on disk, when stored
    # the uncompressed model's credibility check (harness/baseline_check.py); None: not made
    baseline_check: BaselineCheck | None = None

    @property
    def key(self) -> str:
        return self.identity["key"]


def compression_context(tokenizer) -> CompressionContext:
    """What compressors get: the tokenizer and compbench's calibration corpora."""
    from compbench.tasks.calibration import calibration_text

    return CompressionContext(tokenizer=tokenizer, calibration_text=calibration_text)


def build(preset: Preset | str, recipe: Recipe | str, *, device: str | None = None,
          dtype: str | None = None, store: ModelStore | None = None,
          num_labels: int | None = None) -> Artifact:
    """Load the preset's uncompressed model and apply the recipe; the result and its identity.

    With a `store`, a storable recipe's model is loaded from it when it holds the artifact's
    key; otherwise it is compressed, saved there, and loaded back, so that what is evaluated is
    always the stored checkpoint (a hit and a miss give the same numbers). With `num_labels`,
    the base is a sequence classifier with a fresh head (not stored: its head is untrained)."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    recipe = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    device = choose_device(device)
    identity = artifact_identity(preset, recipe, dtype, device, num_labels)
    if num_labels is not None:
        store = None
    checked = preset.task_head == "causal-lm" and num_labels is None
    source = {k: identity[k] for k in ("source", "dtype", "device_kind")}
    if store is None or not storable(recipe):
        model, tokenizer = load_model(preset, device=device, dtype=dtype, num_labels=num_labels)
        check = check_baseline(model, tokenizer, source) if checked else None
        result = compress(model, recipe, compression_context(tokenizer))
        origin = "compressed" if store is None else "compressed (recipe not storable)"
        return Artifact(result.model, tokenizer, preset, recipe, result, identity, device, origin,
                        baseline_check=check)
    entry = store.get(identity["key"])
    origin = "loaded from store"
    check = cached_check(source) if checked else None
    if entry is None:
        model, tokenizer = load_model(preset, device=device, dtype=dtype)
        check = check_baseline(model, tokenizer, source) if checked else None
        result = compress(model, recipe, compression_context(tokenizer))
        store.put(result.model, tokenizer, identity, _compression_fields(result))
        del model, result
        entry = store.get(identity["key"])
        origin = "compressed, stored"
    model, tokenizer = store.load(entry, device)
    result = CompressionResult(model=model, **entry.compression)
    return Artifact(model, tokenizer, preset, recipe, result, identity, device, origin,
                    checkpoint_bytes=entry.checkpoint_bytes, baseline_check=check)


def _compression_fields(result: CompressionResult) -> dict[str, Any]:
    """What compression measured, without the model (stored beside the checkpoint)."""
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "model"}
