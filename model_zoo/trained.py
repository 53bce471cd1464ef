"""Trained presets: a base preset fine-tuned once by `compbench finetune`, merged, and cached.

A study that compresses a trained classifier (the SST-2 teacher of the encoder study) names
it like any preset; the first use trains it with the finetune stage (LoRA with a fresh head,
the budget below), merges the adapter into a plain `*ForSequenceClassification` folder and
keeps it in the compbench cache beside the materialized decoder, keyed by the base's identity
and the training settings. Later uses load the folder; a damaged one is reported, never used.
The training run keeps its checkpoints, so a build killed midway resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from compbench.core.io import cache_dir, digest_of
from compbench.errors import CompbenchError
from compbench.model_zoo.embedded import manifest_ok, write_manifest

RECIPE_FILE = "compbench-trained.json"


@dataclass(frozen=True)
class TrainedSpec:
    """A base preset and the `compbench finetune` settings (its config keys) that train it."""

    name: str
    base: str
    finetune: dict = field(default_factory=dict)


TRAINED: dict[str, TrainedSpec] = {
    s.name: s
    for s in [
        # SST-2 teacher: LoRA r16 + fresh head on 12,800 shuffled train sentences (one pass,
        # batch 32, 400 steps), selected on all 872 validation sentences
        TrainedSpec("minilm-l6-v2-sst2", base="minilm-l6-v2", finetune={
            "head": "classification", "dataset": "sst2", "train_rows": 12800, "batch_size": 32,
            "max_steps": 400, "eval_steps": 100, "learning_rate": 1e-3, "max_length": 64,
            "seed": 0}),
    ]
}


def trained_key(spec: TrainedSpec) -> str:
    """Content key of a trained preset: the base's identity and the training settings."""
    from compbench.model_zoo.presets import get_preset, source_identity

    return digest_of({"base": source_identity(get_preset(spec.base)), "finetune": spec.finetune,
                      "version": 1})


def materialize_trained(spec: TrainedSpec, echo=print) -> Path:
    """The trained model's folder, training and merging it on first use (under a file lock; the
    merged folder is written to a staging folder and renamed into place)."""
    key = trained_key(spec)
    target = cache_dir() / "models" / f"{spec.name}-{key[:12]}"
    if manifest_ok(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if manifest_ok(target):
            return target
        if target.exists():
            raise CompbenchError(f"corrupt model cache at {target} (files missing or changed); "
                                 f"remove it (rm -r '{target}') and run again to retrain it")
        _train_and_merge(spec, target, cache_dir() / "runs" / target.name, echo)
    return target


def _train_and_merge(spec: TrainedSpec, target: Path, run_dir: Path, echo) -> None:
    from compbench.core.io import remove_stale_temporaries, staging_path
    from compbench.harness.finetune import job_from, run_finetune

    echo(f"training {spec.name} once ({spec.base}, {spec.finetune}); cached as {target}")
    job = job_from({**spec.finetune, "model": spec.base, "output_dir": str(run_dir)})
    record, artifact = run_finetune(job, resume=run_dir.is_dir(), echo=echo)
    model = artifact.model.merge_and_unload()
    remove_stale_temporaries(target.parent)
    staging = staging_path(target)
    try:
        model.save_pretrained(staging)
        artifact.tokenizer.save_pretrained(staging)
        (staging / RECIPE_FILE).write_text(json.dumps({
            "name": spec.name, "base": spec.base, "finetune": spec.finetune,
            "held_out": record.training["best"], "run_key": record.run_key}, indent=1))
        write_manifest(staging, {"trained": spec.name})
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def trained_identity(spec: TrainedSpec) -> dict:
    """What a trained preset is: its base, its training settings and its files' sha256."""
    from compbench.core.io import sha256_file

    folder = materialize_trained(spec)
    return {"kind": "trained", "name": spec.name, "key": trained_key(spec),
            "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}}
