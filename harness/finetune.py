"""`compbench finetune`: compress a base, train a LoRA adapter on it, write what it measured.

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
from compbench.model_zoo.presets import DTYPE_HELP, DTYPES
from compbench.reports.record import (
    SCHEMA_VERSION,
    CompressionInfo,
    MetricResult,
    RunRecord,
    TaskResult,
    Timing,
)
from compbench.stages.finetune import FinetuneConfig, FinetuneResult
from compbench.stages.lora import LoraSettings

EXAMPLE = """\
example config (finetune.yaml; every key is also a flag: --learning-rate, --max-steps, …):
  model: smollm2-135m
  recipe: nf4:double_quant=true       # the base: int8, nf4, mixed:5:method=bnb, fp32, …
  head: classification                # or sft (then give mix instead of dataset)
  dataset: kasut_math                 # kasut_math, sst2, commonsense_qa
  # mix: gsm8k=1.0,commonsense_qa=0.5  # sft: fraction of each train split
  r: 16
  alpha: 32
  dropout: 0.05
  target_modules: all-linear          # or q_proj,v_proj
  learning_rate: 2.0e-4
  epochs: 1                           # or max_steps: 200
  batch_size: 8
  grad_accum: 1
  seed: 0
  eval_steps: 50                      # evaluate and checkpoint every 50 steps (default: each epoch)
  max_length: 256
  train_rows: 2000                    # the first N shuffled training rows (default: all)
  output_dir: runs/kasut-nf4-r16
then: compbench finetune --config finetune.yaml    (--resume after an interruption)
      compbench eval --model smollm2-135m --recipe nf4:double_quant=true --adapter runs/…/adapter
"""

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
CONFIG_KEYS = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in ("lora", "version")]
RUN_KEYS = ("model", "recipe", "output_dir", "device", "dtype", "num_labels")
KEYS = (*RUN_KEYS, *CONFIG_KEYS, *LORA_KEYS)
WHOLE = ("r", "max_steps", "batch_size", "grad_accum", "seed", "eval_steps", "max_length",
         "train_rows", "eval_rows", "num_labels")
NUMBERS = ("alpha", "dropout", "learning_rate", "epochs", "held_out_fraction")


def check_types(values: dict[str, Any], wholes=WHOLE, numbers=NUMBERS) -> None:
    """Numbers where numbers belong (a YAML config can hold anything). PyYAML reads `2e-4` as a
    string (YAML 1.1 wants `2.0e-4`), so a string that is a float is taken as one."""
    for key in (*wholes, *numbers):
        value = values.get(key)
        if value is None:
            continue
        whole = key in wholes
        if isinstance(value, str) and not whole:
            try:
                values[key] = value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise CompbenchError(f"{key} must be a {'whole number' if whole else 'number'}, "
                                 f"got {value!r}")


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


def read_config_file(path: str, keys=KEYS, command: str = "finetune") -> dict[str, Any]:
    """A stage's YAML config: a mapping of the keys `compbench <command> --help` lists."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CompbenchError(f"cannot read {command} config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CompbenchError(f"{command} config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CompbenchError(f"{command} config {path} must be a mapping of keys (see --help)")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise CompbenchError(f"{command} config {path}: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(keys)}")
    return data


def job_from(values: dict[str, Any]) -> FinetuneJob:
    """A job from merged YAML/flag values (missing keys take the config's defaults)."""
    from compbench.compressors import parse_recipe
    from compbench.stages.data import parse_mix

    values = {k: v for k, v in values.items() if v is not None}
    check_types(values)
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
        from compbench.stages.data import CLASSIFICATION

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


def _task_result(config: FinetuneConfig, metrics: dict[str, float], eval_rows: int) -> tuple[str, TaskResult]:
    """The held-out metrics as a task block: the classification dataset's name with accuracy
    and F1 (as lm-eval keys them), or `sft_held_out` with loss and perplexity."""
    if config.head == "classification":
        keys = {"acc,none": "accuracy", "f1_micro,none": "f1_micro", "f1_macro,none": "f1_macro"}
        name, higher = config.dataset, True
    else:
        keys = {"loss,none": "loss", "perplexity,none": "perplexity"}
        name, higher = "sft_held_out", False
    result = TaskResult({key: MetricResult(metrics[source], None, higher) for key, source in keys.items()},
                        version="finetune", n_original=eval_rows, n_effective=eval_rows)
    return name, result


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
    from compbench.model_zoo.presets import get_preset, resolve_source
    from compbench.stages.data import classification_splits, mix_sft
    from compbench.stages.lora import select_layers

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

    from compbench.core.measure import PeakMemory, Timer
    from compbench.harness.artifact import build
    from compbench.harness.evaluate import environment
    from compbench.reports.plots import loss_curve
    from compbench.reports.store import write_record
    from compbench.stages.data import CLASSIFICATION
    from compbench.stages.finetune import finetune

    check_job(job)
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


def _record(job: FinetuneJob, artifact, result: FinetuneResult, started: float, load_seconds: float,
            train_seconds: float, peak_rss_bytes: int, curve: Path, env: dict) -> RunRecord:
    """The run's results record: the base's identity with the adapter's (its config, the
    training data's sha256 and the saved files'), its size with the adapter, and the held-out
    metrics of the best checkpoint."""
    from compbench.core.io import sha256_file
    from compbench.core.measure import param_counts
    from compbench.stages.data import data_fingerprint

    config = job.config
    compression = artifact.compression
    adapter_bytes = _adapter_bytes(result.saved_dir)
    adapter = {"label": adapter_label(config.lora), "method": "lora", "config": config.as_dict(),
               "data": data_fingerprint(config.head, config.dataset, dict(config.mix)),
               "files": {p.name: sha256_file(p) for p in sorted(result.saved_dir.glob("adapter_*"))}}
    key = digest_of({"base": artifact.key, "config": adapter["config"], "data": adapter["data"]})
    identity = {**artifact.identity, "key": key, "base_key": artifact.key, "adapter": adapter}
    task, task_result = _task_result(config, result.metrics, result.eval_rows)
    params_total, params_nonzero = param_counts(artifact.model)
    return RunRecord(
        status="ok", run_key=key,
        model={"preset": artifact.preset.name, "source": artifact.preset.source,
               "revision": artifact.preset.revision,
               "dtype": str(artifact.model.dtype).removeprefix("torch."),
               "device": artifact.device, "origin": artifact.origin},
        artifact=identity,
        settings={"stage": "finetune", "tasks": [task], "limit": config.eval_rows, "head": config.head},
        compression=CompressionInfo(
            steps=compression.steps, seconds=compression.seconds,
            baseline_size_bytes=compression.size_bytes_before,
            size_bytes=compression.size_bytes + adapter_bytes,
            baseline_16bit_bytes=compression.size_bytes_16bit_before,
            params_total=params_total, params_nonzero=params_nonzero),
        tasks={task: task_result},
        timing=Timing(started_at=started, wall_seconds=time.time() - started,
                      load_and_compress_seconds=load_seconds, peak_rss_mb=peak_rss_bytes / 2**20),
        env=env,
        training={
            **training_block(result, train_seconds, peak_rss_bytes, curve),
            "before": result.initial_metrics, "base_size_bytes": compression.size_bytes,
            "adapter_bytes": adapter_bytes, "size_with_adapter_bytes": compression.size_bytes + adapter_bytes,
            "adapter_dir": str(result.saved_dir),
        },
        schema_version=SCHEMA_VERSION,
    )


def add_parser(sub, positive_int, add_data_dir) -> None:
    """The `finetune` subcommand (flags default to None so that a --config file fills them)."""
    import argparse

    p = sub.add_parser(
        "finetune", help="train a LoRA/QLoRA adapter on a compressed base (classification or SFT)",
        description="Compress a base with --recipe, train a LoRA adapter on it with the transformers "
                    "Trainer (classification head) or trl's SFTTrainer (causal-LM SFT on a --mix, "
                    "loss on the answer only), keep the best checkpoint's adapter, and write the "
                    "training log, a loss curve and a results JSON to --output-dir.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of the keys below (flags given here win)")
    p.add_argument("--model", help="model preset or checkpoint folder (default: smollm2-135m)")
    p.add_argument("--recipe", help="compression recipe of the base (default: fp32), e.g. int8, "
                   "nf4:double_quant=true, mixed:5:method=bnb")
    p.add_argument("--head", choices=("classification", "sft"), help="default: classification")
    p.add_argument("--dataset", help="classification data: kasut_math (default), sst2, commonsense_qa")
    p.add_argument("--num-labels", type=positive_int, dest="num_labels",
                   help="classes of the head (default: the dataset's)")
    p.add_argument("--mix", help="sft data: NAME=FRACTION of each train split, e.g. "
                   "gsm8k=1.0,commonsense_qa=0.5 (gsm8k, commonsense_qa, mmlu_aux)")
    p.add_argument("--r", type=positive_int, help="LoRA rank (default: 16)")
    p.add_argument("--alpha", type=float, help="LoRA alpha (default: 32)")
    p.add_argument("--dropout", type=float, help="LoRA dropout (default: 0.05)")
    p.add_argument("--target-modules", dest="target_modules",
                   help="all-linear (default) or layer names, e.g. q_proj,v_proj")
    p.add_argument("--held-out-fraction", type=float, dest="held_out_fraction",
                   help="sft: part of the mix held out for eval loss (default: 0.05)")
    p.add_argument("--output-dir", dest="output_dir",
                   help="run folder (default: runs/<model>-<recipe>-<head>)")
    add_training_flags(p, positive_int, FinetuneConfig, "tokens per row")
    add_data_dir(p)
    p.set_defaults(func=cmd_finetune)


def add_training_flags(p, positive_int, config_class, max_length_help: str) -> None:
    """The Trainer flags `finetune` and `distill` share, with the stage config's defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    p.add_argument("--learning-rate", type=float, dest="learning_rate",
                   help=f"default: {defaults['learning_rate']:g}")
    p.add_argument("--epochs", type=float, help="passes over the training rows (default: 1)")
    p.add_argument("--max-steps", type=positive_int, dest="max_steps",
                   help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size",
                   help=f"default: {defaults['batch_size']}")
    p.add_argument("--grad-accum", type=positive_int, dest="grad_accum",
                   help="forwards per optimizer step (default: 1)")
    p.add_argument("--seed", type=int, help="default: 0")
    p.add_argument("--eval-steps", type=positive_int, dest="eval_steps",
                   help="evaluate and checkpoint every N steps (default: each epoch)")
    p.add_argument("--max-length", type=positive_int, dest="max_length",
                   help=f"{max_length_help} (default: {defaults['max_length']})")
    p.add_argument("--train-rows", type=positive_int, dest="train_rows",
                   help="use the first N shuffled training rows (default: all)")
    p.add_argument("--eval-rows", type=positive_int, dest="eval_rows",
                   help="use the first N held-out rows (default: all)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if present)")
    p.add_argument("--dtype", choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--resume", action="store_true",
                   help="continue from the last complete checkpoint in --output-dir")


def training_block(result: FinetuneResult, train_seconds: float, peak_rss_bytes: int,
                   curve: Path) -> dict[str, Any]:
    """The results record's `training` fields both stages share."""
    return {
        "steps": result.steps, "processes": result.processes, "seconds": train_seconds,
        "train_rows": result.train_rows, "eval_rows": result.eval_rows,
        "train_tokens": result.train_tokens, "tokens_per_s": result.tokens_per_s,
        "peak_rss_mb": peak_rss_bytes / 2**20, "best": result.metrics,
        "best_checkpoint": result.best_checkpoint, "resumed_from": result.resumed_from,
        "log": str(result.log_path), "loss_curve": str(curve),
    }


def cmd_finetune(args) -> int:
    from compbench.harness.adapter import require_peft
    from compbench.model_zoo.presets import choose_device, get_preset

    require_peft("compbench finetune")
    values = read_config_file(args.config) if args.config else {}
    values.update({k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None})
    job = job_from(values)
    get_preset(job.model)
    choose_device(job.device)
    run_finetune(job, resume=args.resume)
    return 0
