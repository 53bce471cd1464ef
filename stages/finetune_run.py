"""A fine-tuning run: compress a base, train a LoRA adapter on it, write what it measured.

A run is its base (preset + recipe, as `compbench eval` builds it) and a `FinetuneConfig`,
given as flags or as a YAML file of the same keys (flags win). Its output folder holds the
adapter (`adapter/`, reloadable onto the same compressed base with peft), the Trainer's
checkpoints, the training log (JSONL), a loss-curve PNG and one results JSON in `compbench
eval`'s schema with a `training` block, so reports, sweeps and the gate read it unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.core.io import digest_of
from compbench.errors import CompbenchError
from compbench.records.record import RunRecord
from compbench.stages.finetune import FinetuneConfig
from compbench.stages.lora import LoraSettings
from compbench.stages.training import (
    TrainingResult,
    check_types,
    held_out_task,
    resume_point,
    stage_record,
    training_block,
)

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
CONFIG_KEYS = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in ("lora", "version")]
RUN_KEYS = ("model", "recipe", "output_dir", "device", "dtype", "num_labels")
KEYS = (*RUN_KEYS, *CONFIG_KEYS, *LORA_KEYS)
WHOLE = ("r", "max_steps", "batch_size", "grad_accum", "seed", "eval_steps", "max_length",
         "train_rows", "eval_rows", "num_labels")
NUMBERS = ("alpha", "dropout", "learning_rate", "epochs", "held_out_fraction")


@dataclass(frozen=True)
class FinetuneJob:
    """One fine-tuning run: the base to build and the training config."""

    model: str
    recipe: str
    config: FinetuneConfig
    output_dir: Path
    device: str | None = None
    dtype: str | None = None
    num_labels: int | None = None  # classification: None = the dataset's class count


def job_from(values: dict[str, Any]) -> FinetuneJob:
    """A job from merged YAML/flag values (missing keys take the config's defaults)."""
    from compbench.compressors import parse_recipe
    from compbench.stages.data import parse_mix

    values = {k: v for k, v in values.items() if v is not None}
    check_types(values, WHOLE, NUMBERS)
    head = values.get("head", "classification")
    for key, wrong in (("mix", "classification"), ("dataset", "sft"), ("num_labels", "sft")):
        if key in values and head == wrong:
            raise CompbenchError(f"{key} does not apply to head {head} (classification takes "
                                 "dataset and num_labels; sft takes mix)")
    fields = {k: values[k] for k in CONFIG_KEYS if k in values}
    mix = fields.get("mix")
    if isinstance(mix, str):
        fields["mix"] = tuple(parse_mix(mix).items())
    elif isinstance(mix, dict):
        fields["mix"] = tuple(parse_mix(",".join(f"{k}={v}" for k, v in mix.items())).items())
    try:
        lora = LoraSettings(**{k: values[k] for k in LORA_KEYS if k in values})
        config = FinetuneConfig(**fields, lora=lora)
    except TypeError as exc:
        raise CompbenchError(f"bad finetune config: {exc}") from None
    if config.head == "classification":
        from compbench.tasks.classification import CLASSIFICATION

        if config.dataset not in CLASSIFICATION:
            raise CompbenchError(f"unknown classification dataset '{config.dataset}'; known: "
                                 f"{', '.join(CLASSIFICATION)}")
    recipe = str(parse_recipe(str(values.get("recipe", "fp32"))))
    model = str(values.get("model", "smollm2-135m"))
    default_dir = Path("runs") / f"{model}-{recipe}-{config.head}".replace(":", "_")
    return FinetuneJob(model=model, recipe=recipe, config=config,
                       output_dir=Path(values.get("output_dir", default_dir)),
                       device=values.get("device"), dtype=values.get("dtype"),
                       num_labels=values.get("num_labels"))


def adapter_label(lora: LoraSettings) -> str:
    """How a fine-tuned run's recipe reads in reports: `int8+lora:r=16:alpha=32`."""
    return f"lora:r={lora.r}:alpha={lora.alpha:g}"


def _adapter_bytes(folder: Path) -> int:
    """Bytes of the adapter weights on disk (LoRA matrices and the fully trained head)."""
    return sum(p.stat().st_size for p in folder.glob("adapter_model*"))


def check_job(job: FinetuneJob) -> None:
    """Everything that can be checked before the base is loaded: a base recipe peft cannot
    train on, the training data (labels that fit the head, datasets reachable), and LoRA target
    names (against the architecture built on the meta device, without weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from compbench.compressors import parse_recipe
    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source
    from compbench.stages.data import mix_sft
    from compbench.stages.lora import select_layers
    from compbench.tasks.classification import classification_splits

    blocked = parse_recipe(job.recipe).untrainable_steps()
    if blocked:
        raise CompbenchError(
            f"recipe '{job.recipe}': the layers {', '.join(map(str, blocked))} leaves cannot carry a "
            "LoRA adapter (peft trains float and bitsandbytes layers, not packed or torch-quantized "
            "ones); fine-tune an fp32/bf16, pruned, int8, nf4, fp4 or mixed:…:method=bnb base")
    config = job.config
    if config.head == "classification":
        num_labels = classification_splits(config.dataset, job.num_labels)[2]
        auto, head = AutoModelForSequenceClassification, {"num_labels": num_labels}
    else:
        mix_sft(dict(config.mix), config.seed, config.held_out_fraction, chat=False)
        auto, head = AutoModelForCausalLM, {}
    preset = get_preset(job.model)
    architecture = AutoConfig.from_pretrained(resolve_source(preset), revision=preset.revision, **head)
    with torch.device("meta"):
        select_layers(auto.from_config(architecture), config.lora.target_modules)


def run_finetune(job: FinetuneJob, resume: bool = False, echo=print):
    """Build the base, train the adapter, write the loss curve and the results JSON. Returns
    the record and the artifact, whose model now carries the trained (best) adapter; under a
    data-parallel launcher every process trains and only rank 0 writes (the others get None)."""
    from transformers import set_seed

    from compbench.artifacts.adapter import record_base
    from compbench.artifacts.build import build
    from compbench.core.environment import environment
    from compbench.core.measure import PeakMemory, Timer
    from compbench.records.index import write_record
    from compbench.reports.plots import loss_curve
    from compbench.stages.finetune import finetune
    from compbench.tasks.classification import CLASSIFICATION

    check_job(job)
    resume_point(job.output_dir, resume)  # nothing to resume, or old checkpoints: said before loading
    config = job.config
    num_labels = None
    if config.head == "classification":
        num_labels = job.num_labels or CLASSIFICATION[config.dataset].num_labels
    started = time.time()
    set_seed(config.seed)  # the fresh head's init
    with PeakMemory() as memory, Timer() as load_timer:
        artifact = build(job.model, job.recipe, device=job.device, dtype=job.dtype, num_labels=num_labels)
    echo(f"base {job.model} recipe={job.recipe} ({artifact.origin}); training {config.head} "
         f"{config.dataset if config.head == 'classification' else dict(config.mix)} -> {job.output_dir}")
    job.output_dir.mkdir(parents=True, exist_ok=True)
    with memory, Timer() as train_timer:
        result = finetune(artifact.model, artifact.tokenizer, config, job.output_dir,
                          resume=resume, device=artifact.device)
    if not result.main_process:  # data-parallel: rank 0 writes the curve and the record
        return None, artifact
    record_base(result.saved_dir, artifact.identity)
    curve = loss_curve(result.history, job.output_dir / "loss_curve.png",
                       f"{job.model} {job.recipe} + {adapter_label(config.lora)}")
    record = _record(job, artifact, result, started, load_timer.seconds, train_timer.seconds,
                     memory.peak_rss_bytes, curve, environment())
    path = job.output_dir / f"finetune__{record.run_key[:10]}.json"
    write_record(path, record)
    for name, metrics in (("before training", result.initial_metrics), ("best", result.metrics)):
        if metrics:
            echo(f"held-out, {name} (step {metrics['step']:g}): " + ", ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if k != "step"))
    echo(f"wrote {path} and the adapter {result.saved_dir}")
    return record, artifact


def _record(job: FinetuneJob, artifact, result: TrainingResult, started: float, load_seconds: float,
            train_seconds: float, peak_rss_bytes: int, curve: Path, env: dict) -> RunRecord:
    """The run's results record: the base's identity with the adapter's (its config, the
    training data's sha256 and the saved files'), its size with the adapter, and the held-out
    metrics of the best checkpoint."""
    from compbench.core.io import sha256_file
    from compbench.stages.data import data_fingerprint

    config = job.config
    base_bytes = artifact.compression.size_bytes
    adapter_bytes = _adapter_bytes(result.saved_dir)
    adapter = {"label": adapter_label(config.lora), "method": "lora", "config": config.as_dict(),
               "data": data_fingerprint(config.head, config.dataset, dict(config.mix)),
               "files": {p.name: sha256_file(p) for p in sorted(result.saved_dir.glob("adapter_*"))}}
    key = digest_of({"base": artifact.key, "config": adapter["config"], "data": adapter["data"]})
    identity = {**artifact.identity, "key": key, "base_key": artifact.key, "adapter": adapter}
    training = {**training_block(result, train_seconds, peak_rss_bytes, curve),
                "before": result.initial_metrics, "base_size_bytes": base_bytes,
                "adapter_bytes": adapter_bytes, "size_with_adapter_bytes": base_bytes + adapter_bytes,
                "adapter_dir": str(result.saved_dir)}
    held_out = held_out_task(config, result.metrics, result.eval_rows)
    return stage_record("finetune", artifact, identity, held_out,
                        eval_rows=config.eval_rows, head=config.head, started=started,
                        load_seconds=load_seconds, peak_rss_bytes=peak_rss_bytes, env=env,
                        training=training, added_bytes=adapter_bytes)