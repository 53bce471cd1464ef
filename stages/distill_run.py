"""A distillation run: build a teacher and a compressed student of it, distill, write results.

The teacher is a preset or folder (a trained classifier, e.g. a merged `compbench export
--adapter … --merge`; or a decoder for causal distillation), built like `compbench eval` builds
a model (`--teacher-recipe`, default fp32). The student is the same model compressed by
`--student-recipe` (e.g. `structured:ffn=0.3`). The run folder holds the student
(`student/`, stock `save_pretrained`), the Trainer's checkpoints, the training log, a loss
curve and one results JSON in `compbench eval`'s schema with a `training` block. The same
command with `--kl 0 --hidden 0` trains the student on labels alone, for comparison.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.core.io import digest_of
from compbench.errors import CompbenchError
from compbench.stages.distill import DistillConfig, DistillLoss, parse_layer_map
from compbench.stages.training import (
    check_types,
    held_out_task,
    resume_point,
    stage_record,
    training_block,
)

LOSS_KEYS = ("ce", "kl", "hidden", "attention", "temperature", "layer_map")
CONFIG_KEYS = [f.name for f in dataclasses.fields(DistillConfig) if f.name not in ("loss", "version")]
RUN_KEYS = ("teacher", "teacher_recipe", "student_recipe", "output_dir", "device", "dtype")
KEYS = (*RUN_KEYS, *CONFIG_KEYS, *LOSS_KEYS)
WHOLE = ("max_steps", "batch_size", "grad_accum", "seed", "eval_steps", "max_length", "train_rows",
         "eval_rows")
NUMBERS = ("ce", "kl", "hidden", "attention", "temperature", "learning_rate", "epochs")


@dataclass(frozen=True)
class DistillJob:
    """One distillation run: the teacher, the student's recipe and the training config."""

    teacher: str
    teacher_recipe: str
    student_recipe: str
    config: DistillConfig
    output_dir: Path
    device: str | None = None
    dtype: str | None = None


def distill_label(loss: DistillLoss) -> str:
    """How a distilled run's recipe reads in reports: `structured:ffn=0.3+distill:ce=0.5:kl=0.5`."""
    weights = [f"{name}={getattr(loss, name):g}" for name in ("ce", "kl", "hidden", "attention")
               if getattr(loss, name)]
    return "distill:" + ":".join(weights) + (f":T={loss.temperature:g}" if loss.kl else "")


def loss_terms(loss: DistillLoss) -> str:
    """The loss a run trains with, in words, saying which terms are off: by default there is no
    hidden-state term, although the encoder study's distilled student uses one."""
    terms = [f"{loss.ce:g} x CE(labels)"] if loss.ce else []
    if loss.kl:
        terms.append(f"{loss.kl:g} x T^2 KL(teacher || student) at T={loss.temperature:g}")
    if loss.hidden:
        terms.append(f"{loss.hidden:g} x MSE(hidden states)")
    if loss.attention:
        terms.append(f"{loss.attention:g} x MSE(attention maps)")
    text = " + ".join(terms)
    off = [name for name in ("kl", "hidden", "attention") if not getattr(loss, name)]
    if off:
        text += f" ({', '.join(off)} off)"
    if not loss.hidden:
        text += "; the encoder study's distilled student adds --hidden 1 (every layer's hidden state)"
    return text


def job_from(values: dict[str, Any]) -> DistillJob:
    """A job from merged YAML/flag values (missing keys take the config's defaults)."""
    from compbench.compressors import parse_recipe

    values = {k: v for k, v in values.items() if v is not None}
    check_types(values, WHOLE, NUMBERS)
    for key in ("teacher", "student_recipe"):
        if key not in values:
            raise CompbenchError(f"distill needs --{key.replace('_', '-')} (see --help)")
    loss_fields = {k: values[k] for k in LOSS_KEYS if k in values}
    if isinstance(loss_fields.get("layer_map"), str):
        loss_fields["layer_map"] = parse_layer_map(loss_fields["layer_map"])
    fields = {k: values[k] for k in CONFIG_KEYS if k in values}
    if fields.get("head") == "causal" and "dataset" not in fields:
        fields["dataset"] = "wikitext2"
    try:
        config = DistillConfig(**fields, loss=DistillLoss(**loss_fields))
    except TypeError as exc:
        raise CompbenchError(f"bad distill config: {exc}") from None
    teacher_recipe = str(parse_recipe(str(values.get("teacher_recipe", "fp32"))))
    student_recipe = str(parse_recipe(str(values["student_recipe"])))
    teacher = str(values["teacher"])
    default_dir = Path("runs") / f"{Path(teacher).name}-{student_recipe}-distilled".replace(":", "_")
    return DistillJob(teacher=teacher, teacher_recipe=teacher_recipe, student_recipe=student_recipe,
                      config=config, output_dir=Path(values.get("output_dir", default_dir)),
                      device=values.get("device"), dtype=values.get("dtype"))


def check_job(job: DistillJob) -> None:
    """What can be checked before anything loads: a student whose weights can be trained, a
    teacher whose kind fits the head, and the training data."""
    from compbench.compressors import COMPRESSORS, parse_recipe
    from compbench.model_zoo.presets import get_preset
    from compbench.tasks.classification import classification_splits

    quantized = [str(step) for step in parse_recipe(job.student_recipe).steps
                 if COMPRESSORS[step.method].kind == "quantize"]
    if quantized:
        raise CompbenchError(f"--student-recipe {job.student_recipe}: distillation trains the student's "
                             f"weights, and {', '.join(quantized)} leaves them quantized; distill a pruned "
                             "student, then quantize it")
    preset = get_preset(job.teacher)
    if job.config.head == "classification":
        if preset.task_head != "sequence-classification":
            raise CompbenchError(f"--teacher {job.teacher}: classification distillation needs a trained "
                                 "classifier (a folder holding *ForSequenceClassification, e.g. compbench "
                                 "export --adapter DIR --merge OUT after compbench finetune)")
        classification_splits(job.config.dataset)
    else:
        if preset.task_head != "causal-lm":
            raise CompbenchError(f"--teacher {job.teacher}: causal distillation needs a causal LM "
                                 f"(this model's head: {preset.task_head})")
        from compbench.tasks.calibration import calibration_file

        calibration_file(job.config.dataset)
    if job.config.loss.layer_map:  # a student keeps its teacher's depth: no compressor drops blocks
        from transformers import AutoConfig

        from compbench.model_zoo.sources import resolve_source
        from compbench.stages.distill import layer_pairs

        layers = AutoConfig.from_pretrained(resolve_source(preset)).get_text_config().num_hidden_layers
        layer_pairs(job.config.loss, layers, layers)


def run_distill(job: DistillJob, resume: bool = False, echo=print):
    """Build teacher and student, distill, write the loss curve and the results JSON; returns the
    record (None on the other ranks of a data-parallel run)."""
    from transformers import set_seed

    from compbench.artifacts.build import build
    from compbench.core.environment import environment
    from compbench.core.measure import PeakMemory, Timer
    from compbench.records.index import write_record
    from compbench.reports.plots import loss_curve
    from compbench.stages.distill import distill

    check_job(job)
    resume_point(job.output_dir, resume)  # nothing to resume, or old checkpoints: said before loading
    started = time.time()
    set_seed(job.config.seed)
    with PeakMemory() as memory, Timer() as load_timer:
        teacher = build(job.teacher, job.teacher_recipe, device=job.device, dtype=job.dtype)
        student = build(job.teacher, job.student_recipe, device=job.device, dtype=job.dtype)
    echo(f"loss: {loss_terms(job.config.loss)}")
    echo(f"teacher {job.teacher} recipe={job.teacher_recipe}; student recipe={job.student_recipe}; "
         f"distilling on {job.config.dataset} -> {job.output_dir}")
    job.output_dir.mkdir(parents=True, exist_ok=True)
    with memory, Timer() as train_timer:
        result = distill(student.model, teacher.model, student.tokenizer, job.config, job.output_dir,
                         resume=resume, device=student.device)
    if not result.main_process:
        return None
    curve = loss_curve(result.history, job.output_dir / "loss_curve.png",
                       f"{job.teacher} {job.student_recipe} + {distill_label(job.config.loss)}")
    record = _record(job, teacher, student, result, started, load_timer.seconds, train_timer.seconds,
                     memory.peak_rss_bytes, curve, environment())
    path = job.output_dir / f"distill__{record.run_key[:10]}.json"
    write_record(path, record)
    metrics = result.metrics
    echo(f"held-out, best (step {metrics['step']:g}): " + ", ".join(
        f"{k} {v:.4g}" for k, v in metrics.items() if k != "step"))
    echo(f"wrote {path} and the student {result.saved_dir}")
    return record


def _data_fingerprint(config: DistillConfig) -> dict[str, str]:
    from compbench.core.io import sha256_file
    from compbench.stages.data import data_fingerprint

    if config.head == "classification":
        return data_fingerprint("classification", config.dataset, {})
    from compbench.tasks.calibration import calibration_file

    path = calibration_file(config.dataset)
    return {f"{path.parent.name}/{path.name}": sha256_file(path)}


def _record(job: DistillJob, teacher, student, result, started: float, load_seconds: float,
            train_seconds: float, peak_rss_bytes: int, curve: Path, env: dict):
    """The student's results record: its identity with the teacher's and the distillation's,
    its size (on disk, as saved) and the best checkpoint's held-out metrics."""
    from compbench.core.measure import checkpoint_bytes

    config = job.config
    distillation = {"label": distill_label(config.loss), "config": config.as_dict(),
                    "data": _data_fingerprint(config),
                    "teacher": {"model": job.teacher, "recipe": job.teacher_recipe, "key": teacher.key}}
    key = digest_of({"student": student.key, "teacher": teacher.key, "config": distillation["config"],
                     "data": distillation["data"]})
    identity = {**student.identity, "key": key, "base_key": student.key, "distillation": distillation}
    task, task_result = held_out_task(config, result.metrics, result.eval_rows)
    if config.head == "causal":
        task = "distill_held_out"
    training = {**training_block(result, train_seconds, peak_rss_bytes, curve),
                "student_dir": str(result.saved_dir)}
    return stage_record("distill", student, identity, (task, task_result), eval_rows=config.eval_rows,
                        head=config.head, started=started, load_seconds=load_seconds,
                        peak_rss_bytes=peak_rss_bytes, env=env, training=training,
                        checkpoint_bytes=checkpoint_bytes(student.model))