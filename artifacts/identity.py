"""What an artifact is: everything that determines its weights, and the key that digests it.

An artifact's identity holds the source's content (the GGUF's or the checkpoint files' sha256,
or a hub id and revision), the load dtype and device kind, the canonical recipe with every
step's full config and `version`, the calibration data files' sha256, and the versions of the
libraries that write the weights. Spellings that parse to one recipe (`gptq:4`, `gptq:bits=4`)
give one identity; its digest is the artifact key.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from compbench.compressors import COMPRESSORS, Recipe
from compbench.core.io import digest_of, sha256_file
from compbench.model_zoo.loading import device_kind, resolve_dtype
from compbench.model_zoo.presets import Preset
from compbench.model_zoo.sources import source_identity

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
