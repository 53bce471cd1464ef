"""A compressed model (with an adapter, beside it or merged) saved as a Hugging Face checkpoint
that stock `from_pretrained` reloads, written atomically."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from compbench.core.io import remove_stale_temporaries, staging_path


def save_checkpoint_atomic(artifact, out: Path, adapter=None) -> None:
    """`save_pretrained` into a staging folder beside `out`, then renamed onto it: a kill
    mid-save leaves no half checkpoint under the name, only a staging folder that the next
    export beside it removes. An `adapter` is copied in as `out/adapter`."""
    remove_stale_temporaries(out.parent)
    staging = staging_path(out)
    artifact.model.save_pretrained(staging)
    artifact.tokenizer.save_pretrained(staging)
    if adapter is not None:
        shutil.copytree(adapter.path, staging / "adapter")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)


def export_name(model: str, recipe, revision: str, gptq_revision: str) -> str:
    """The research's checkpoint names: `{model}-{revision}-{gptq_revision}-{bits}bits` for
    recipes that end in a quantizer swept along its bit-width (GPTQ, RTN),
    `{model}-{revision}-{recipe}` otherwise."""
    from compbench.compressors import COMPRESSORS

    last = recipe.steps[-1]
    if COMPRESSORS[last.method].axes == ("bits",):
        return f"{model}-{revision}-{gptq_revision}-{last.config.bits}bits"
    return f"{model}-{revision}-" + re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(recipe))


def export_checkpoint(preset, recipe, out: Path, *, adapter=None, merge: bool = False,
                      device: str | None = None, dtype: str | None = None) -> None:
    """Build `preset` compressed by `recipe` and save it to `out`: with `adapter`, the adapter
    beside it (`out/adapter`), or with `merge` its update added into the base's weights (a
    classification adapter's base gets its head's class count)."""
    import dataclasses

    from compbench.artifacts.adapter import check_base, check_mergeable, merged
    from compbench.artifacts.build import build

    if adapter is not None and merge:
        check_mergeable(recipe)
    artifact = build(preset, recipe, device=device, dtype=dtype,
                     num_labels=adapter.num_labels if adapter else None)
    if adapter is not None:
        check_base(adapter, artifact.identity)
    if adapter is not None and merge:
        artifact = dataclasses.replace(artifact, model=merged(artifact, adapter))
    save_checkpoint_atomic(artifact, out, None if merge else adapter)
