"""Build a compressed model with its identity: `build(preset, recipe) -> Artifact`, from the
models store when it holds that very artifact (identity: artifacts/identity.py).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from torch import nn

from compbench.artifacts.baseline_check import BaselineCheck, cached_check, check_baseline
from compbench.artifacts.identity import artifact_identity
from compbench.artifacts.store import ModelStore, storable
from compbench.compressors import CompressionResult, Recipe, compress, parse_recipe
from compbench.compressors.registry import CompressionContext
from compbench.model_zoo.loading import choose_device, load_model
from compbench.model_zoo.presets import Preset, get_preset


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
    # the uncompressed model's credibility check (artifacts/baseline_check.py); None: not made
    baseline_check: BaselineCheck | None = None
    # where the model computes otherwise than its layers' library would by default, and why
    # (an adapter scored through the compute path it was trained on); None: the default
    compute_path: str | None = None

    @property
    def key(self) -> str:
        return self.identity["key"]

    def model_block(self, **measured: Any) -> dict[str, Any]:
        """The results record's `model` block: what the model is and where it ran, with what the
        run measured about it (window, batch sizes, device)."""
        return {"preset": self.preset.name, "source": self.preset.source,
                "revision": self.preset.revision, "dtype": str(self.model.dtype).removeprefix("torch."),
                "device": self.device, "origin": self.origin, **measured,
                **({"compute_path": self.compute_path} if self.compute_path else {})}

    def compression_info(self, *, added_bytes: int = 0, checkpoint_bytes: int | None = None):
        """The results record's `compression` block: what compression measured, the parameter
        counts, and the size with `added_bytes` (an adapter's) counted in."""
        from compbench.core.measure import param_counts
        from compbench.records.record import CompressionInfo

        total, nonzero = param_counts(self.model)
        result = self.compression
        return CompressionInfo(
            steps=result.steps, seconds=result.seconds, baseline_size_bytes=result.size_bytes_before,
            size_bytes=result.size_bytes + added_bytes,
            baseline_16bit_bytes=result.size_bytes_16bit_before, params_total=total,
            params_nonzero=nonzero, checkpoint_bytes=checkpoint_bytes)


def compression_context(tokenizer) -> CompressionContext:
    """What compressors get: the tokenizer and compbench's calibration corpora."""
    from compbench.tasks.calibration import calibration_text

    return CompressionContext(tokenizer=tokenizer, calibration_text=calibration_text)


def build(preset: Preset | str, recipe: Recipe | str, *, device: str | None = None,
          dtype: str | None = None, store: ModelStore | None = None,
          num_labels: int | None = None, identity: dict[str, Any] | None = None) -> Artifact:
    """Load the preset's uncompressed model and apply the recipe; the result and its identity.

    With a `store`, a storable recipe's model is loaded from it when it holds the artifact's
    key and its files are as written (a damaged entry is reported, removed and rebuilt);
    otherwise it is compressed, saved there, and loaded back, so that what is evaluated is
    always the stored checkpoint (a hit and a miss give the same numbers). With `num_labels`,
    the base is a sequence classifier with a fresh head (not stored: its head is untrained).
    `identity`: the plan's, computed once for this preset, recipe, dtype and device."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    recipe = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    device = choose_device(device)
    if identity is None:
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
    damage = store.damage(entry) if entry is not None else None
    if damage is not None:
        print(f"compbench: warning: the stored {entry.model} {entry.recipe} ({entry.key[:12]}) is "
              f"damaged: {damage}; removed, compressing again", file=sys.stderr)
        store.remove(entry)
        entry = None
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
