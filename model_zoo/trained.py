"""Trained presets: a model that compbench's finetune or distill stage makes once, then caches.

A study names a trained model like any preset: the SST-2 teacher of the encoder study, or a
pruned student distilled from it. The first use runs the stage with the settings below (the
finetune adapter is merged into a plain `*ForSequenceClassification` folder; distillation's
student already is one) and keeps the folder in the compbench cache beside the materialized
decoder, keyed by the base's identity (a trained base's own files) and the settings. Later uses
load the folder; a damaged one is reported, never used. The run folder keeps its checkpoints,
so a build killed midway resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from compbench.core.io import cache_dir, digest_of
from compbench.errors import CompbenchError
from compbench.model_zoo.cache import build_cached, build_in_staging, write_manifest

RECIPE_FILE = "compbench-trained.json"


@dataclass(frozen=True)
class TrainedSpec:
    """What makes a trained preset: `compbench finetune` or `compbench distill` with these
    config keys (finetune's `model`, distill's `teacher`: the base it starts from)."""

    name: str
    stage: str  # finetune | distill
    settings: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings["model" if self.stage == "finetune" else "teacher"]


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
            **_SST2_BUDGET}),
        # its 30%-narrower-FFN student, distilled (logits and every layer's hidden state) ...
        TrainedSpec("minilm-l6-v2-sst2-ffn30-kd", "distill", {
            **_STUDENT, "ce": 0.5, "kl": 0.5, "hidden": 1.0, "temperature": 2.0}),
        # ... and trained on the labels alone with the same budget, for comparison
        TrainedSpec("minilm-l6-v2-sst2-ffn30-labels", "distill", {
            **_STUDENT, "ce": 1.0, "kl": 0.0, "hidden": 0.0}),
        # smollm2-135m with 25% of its MLP channels removed, distilled from fp32 (logits, T=2,
        # and the next-token loss) on wikitext-2 validation text: 100 steps x 4 x 256 tokens
        TrainedSpec("smollm2-135m-ffn25-kd", "distill", {
            "teacher": "smollm2-135m", "student_recipe": "structured:ffn=0.25", "head": "causal",
            "dataset": "wikitext2", "ce": 0.5, "kl": 0.5, "temperature": 2.0, "learning_rate": 1e-4,
            "max_steps": 100, "eval_steps": 25, "batch_size": 4, "max_length": 256, "eval_rows": 64,
            "seed": 0}),
    ]
}


def trained_key(spec: TrainedSpec) -> str:
    """Content key of a trained preset: its base's identity and its stage's settings."""
    from compbench.model_zoo.presets import get_preset, source_identity

    return digest_of({"base": source_identity(get_preset(spec.base)), "stage": spec.stage,
                      "settings": spec.settings, "version": 1})


def materialize_trained(spec: TrainedSpec, echo=print) -> Path:
    """The trained model's folder, made on first use (under a file lock; written to a staging
    folder and renamed into place)."""
    target = cache_dir() / "models" / f"{spec.name}-{trained_key(spec)[:12]}"
    return build_cached(target, lambda t: _train(spec, t, cache_dir() / "runs" / t.name, echo),
                        "retrain it")


def _train(spec: TrainedSpec, target: Path, run_dir: Path, echo) -> None:
    """Run the stage as a user would, `compbench finetune` then `compbench export --adapter …
    --merge`, or `compbench distill` (in child processes: the stages live in the harness, a
    floor above the model zoo, and a child gives the training memory back when it ends)."""
    import yaml

    echo(f"making {spec.name} once: compbench {spec.stage} {spec.settings}; cached as {target}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / f"{spec.stage}.yaml"
    config.write_text(yaml.safe_dump(spec.settings))
    resume = ["--resume"] if (run_dir / "checkpoints").is_dir() else []
    _compbench(spec.stage, "--config", str(config), "--output-dir", str(run_dir), *resume)
    record = json.loads(next(run_dir.glob(f"{spec.stage}__*.json")).read_text())

    def fill(staging: Path) -> None:
        if spec.stage == "finetune":
            _compbench("export", "--model", spec.base, "--recipe", spec.settings.get("recipe", "fp32"),
                       "--adapter", record["training"]["adapter_dir"], "--merge", "--force", str(staging))
        else:
            shutil.copytree(record["training"]["student_dir"], staging)
        (staging / RECIPE_FILE).write_text(json.dumps({
            "name": spec.name, "stage": spec.stage, "settings": spec.settings,
            "held_out": record["training"]["best"], "run_key": record["run_key"]}, indent=1))
        write_manifest(staging, {"trained": spec.name})

    build_in_staging(target, fill)


def _compbench(*argv: str) -> None:
    import subprocess
    import sys

    code = subprocess.run([sys.executable, "-m", "compbench.harness.cli", *argv]).returncode
    if code:
        raise CompbenchError(f"compbench {' '.join(argv)} exited with {code} (its output is above)")


def trained_identity(spec: TrainedSpec) -> dict:
    """What a trained preset is: how it was made and its files' sha256."""
    from compbench.core.io import sha256_file

    folder = materialize_trained(spec)
    return {"kind": "trained", "name": spec.name, "key": trained_key(spec),
            "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}}
