"""Trained presets: models that compbench's finetune or distill stage makes once, then caches.

A study names a trained model like any preset: the SST-2 teacher of the encoder study, or a
pruned student distilled from it. This module says what each is made of and where its folder
is, and looks it up; it never trains. The command that needs one builds it first, as a run
(runs/trained.py: the stage with the settings below; the finetune adapter is merged into a
plain `*ForSequenceClassification` folder, distillation's student already is one), and keeps
the folder in the compbench cache beside the materialized decoder, keyed by the base's identity
(a trained base's own files) and the settings. A damaged folder is reported, never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from compbench.core.io import cache_dir, digest_of
from compbench.errors import CompbenchError
from compbench.model_zoo.cache import manifest_ok, write_manifest

RECIPE_FILE = "compbench-trained.json"


@dataclass(frozen=True)
class TrainedSpec:
    """What makes a trained preset: `compbench finetune` or `compbench distill` with these
    config keys (finetune's `model`, distill's `teacher`: the base it starts from)."""

    name: str
    stage: str  # finetune | distill
    settings: dict = field(default_factory=dict)
    # training minutes measured on this project's 2-core machine (docs/models.md), announced
    # before a build; not part of the key
    minutes_here: float | None = None

    @property
    def base(self) -> str:
        return self.settings["model" if self.stage == "finetune" else "teacher"]

    def describe(self) -> str:
        """What building it takes, in a phrase: `finetune, 400 training steps, about 6 minutes`."""
        steps = self.settings.get("max_steps")
        about = f", about {self.minutes_here:g} minutes on 2 CPU cores" if self.minutes_here else ""
        return f"{self.stage} of {self.base}" + (f", {steps} training steps" if steps else "") + about


_SST2_BUDGET = {"dataset": "sst2", "train_rows": 12800, "batch_size": 32, "max_steps": 400,
                "eval_steps": 100, "max_length": 64, "seed": 0}
_STUDENT = {"teacher": "minilm-l6-v2-sst2", "student_recipe": "structured:ffn=0.3:calibration=sst2",
            "head": "classification", "learning_rate": 1e-4, **_SST2_BUDGET}
TRAINED: dict[str, TrainedSpec] = {
    s.name: s
    for s in [
        # SST-2 teacher: LoRA r16 + fresh head on 12,800 shuffled train sentences (one pass,
        # batch 32, 400 steps), the best of 4 checkpoints on all 872 validation sentences
        TrainedSpec("minilm-l6-v2-sst2", "finetune", {
            "model": "minilm-l6-v2", "head": "classification", "learning_rate": 1e-3,
            **_SST2_BUDGET}, minutes_here=5.5),
        # its 30%-narrower-FFN student, distilled (logits and every layer's hidden state) ...
        TrainedSpec("minilm-l6-v2-sst2-ffn30-kd", "distill", {
            **_STUDENT, "ce": 0.5, "kl": 0.5, "hidden": 1.0, "temperature": 2.0}, minutes_here=15),
        # ... and trained on the labels alone with the same budget, for comparison
        TrainedSpec("minilm-l6-v2-sst2-ffn30-labels", "distill", {
            **_STUDENT, "ce": 1.0, "kl": 0.0, "hidden": 0.0}, minutes_here=11),
        # smollm2-135m with 25% of its MLP channels removed, distilled from fp32 (logits, T=2,
        # and the next-token loss) on wikitext-2 validation text: 100 steps x 4 x 256 tokens
        TrainedSpec("smollm2-135m-ffn25-kd", "distill", {
            "teacher": "smollm2-135m", "student_recipe": "structured:ffn=0.25", "head": "causal",
            "dataset": "wikitext2", "ce": 0.5, "kl": 0.5, "temperature": 2.0, "learning_rate": 1e-4,
            "max_steps": 100, "eval_steps": 25, "batch_size": 4, "max_length": 256, "eval_rows": 64,
            "seed": 0}, minutes_here=18),
    ]
}


def trained_key(spec: TrainedSpec, base: dict) -> str:
    """Content key of a trained preset: its base's identity (`base`: the base preset's source
    identity, a trained base's own files) and its stage's settings."""
    return digest_of({"base": base, "stage": spec.stage, "settings": spec.settings, "version": 1})


def trained_folder(spec: TrainedSpec, base: dict) -> Path:
    """Where the trained preset's folder is kept in the cache (built or not)."""
    return cache_dir() / "models" / f"{spec.name}-{trained_key(spec, base)[:12]}"


def run_folder(spec: TrainedSpec, base: dict) -> Path:
    """Where its training run keeps checkpoints and the training log (a killed build resumes)."""
    return cache_dir() / "runs" / trained_folder(spec, base).name


def built_folder(spec: TrainedSpec, base: dict) -> Path:
    """The trained preset's folder, checked against its manifest. Looking a model up never
    trains it: a preset not built yet is one line saying which commands build it (the runner
    does, announced, before a run that names it), a damaged one is reported, never used."""
    folder = trained_folder(spec, base)
    if manifest_ok(folder):
        return folder
    if folder.exists():
        raise CompbenchError(
            f"corrupt model cache at {folder} (files missing, resized or changed: their sha256 "
            f"differs from the manifest); remove it (rm -r '{folder}') and run again to retrain it")
    raise CompbenchError(f"trained preset '{spec.name}' is not built yet; `compbench models --build "
                         f"{spec.name}` builds it ({spec.describe()}), as does any compbench eval, "
                         "sweep, export, finetune or distill that names it")


def write_trained_files(folder: Path, spec: TrainedSpec, record: dict) -> None:
    """What a built folder records about itself: how it was made, its held-out scores, and the
    manifest of its files (checked on every use)."""
    (folder / RECIPE_FILE).write_text(json.dumps({
        "name": spec.name, "stage": spec.stage, "settings": spec.settings,
        "held_out": record["training"]["best"], "run_key": record["run_key"]}, indent=1))
    write_manifest(folder, {"trained": spec.name})


def trained_identity(spec: TrainedSpec, base: dict) -> dict:
    """What a trained preset is: how it was made and its files' sha256."""
    from compbench.core.io import sha256_file

    folder = built_folder(spec, base)
    return {"kind": "trained", "name": spec.name, "key": trained_key(spec, base),
            "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}}
