"""What the two stages share: the Trainer plumbing (the arguments, the resume point (a checkpoint
counts only once complete), the JSONL log, training then saving the result atomically, what a
run measured: `TrainingResult`) and the job side (YAML config files, the held-out task block
and the `training` block of the results record).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError
from compbench.records.record import MetricResult, TaskResult

STATE_FILE = "trainer_state.json"  # the Trainer writes it last into a checkpoint
CHECKPOINT_MANIFEST = "compbench-checkpoint.json"  # written after it: the checkpoint is complete


@dataclass
class TrainingResult:
    """What training measured: the best held-out metrics, the log, and where things are."""

    metrics: dict[str, float]  # best checkpoint's held-out metrics (eval_ prefix dropped)
    initial_metrics: dict[str, float] | None  # sft: the held-out metrics before training
    best_checkpoint: str | None
    saved_dir: Path  # what training made: the adapter (finetune) or the student (distill)
    log_path: Path
    history: list[dict[str, Any]]
    steps: int
    seconds: float  # training wall time of this invocation (a resumed run: the rest only)
    train_tokens: int  # non-padding tokens fed in training, over all invocations
    tokens_per_s: float | None  # this invocation's tokens over its training seconds
    train_rows: int
    eval_rows: int
    resumed_from: str | None
    processes: int = 1  # data-parallel processes (accelerate launch / torchrun)
    main_process: bool = True  # False on the other ranks, which write nothing


def last_complete_checkpoint(folder: Path, echo=print) -> Path | None:
    """The newest `checkpoint-N` that is complete and whole: its trainer state and compbench's
    manifest were written (the Trainer writes the state last, `stage_callbacks` the manifest
    after it) and every file still has the sha256 the manifest recorded. A newer, incomplete one
    (a run killed while saving) is set aside as `incomplete-checkpoint-N`, said in a line, never
    deleted; a damaged one (a file missing or changed) stops the resume, kept for inspection."""
    from compbench.core.io import sha256_file

    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in found:
        try:
            json.loads((path / STATE_FILE).read_text())
            files = json.loads((path / CHECKPOINT_MANIFEST).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            aside = path.with_name(f"incomplete-{path.name}")
            try:
                path.rename(aside)
            except FileNotFoundError:  # another data-parallel process set it aside first
                continue
            echo(f"{path.name} is incomplete (written by a run killed while saving it): set aside as "
                 f"{aside.name}, resuming from the checkpoint before it")
            continue
        for name, recorded in files.items():
            file = path / name
            whole = file.is_file() and file.stat().st_size == recorded["size"]
            if not whole or sha256_file(file) != recorded["sha256"]:
                raise CompbenchError(
                    f"--resume: {path} is damaged ({name} is missing or changed since it was saved: its "
                    "size or sha256 differs from the checkpoint's manifest); it is kept for inspection. "
                    f"Remove it (rm -r '{path}') to resume from the checkpoint before it, or start "
                    "again without --resume in another --output-dir")
        return path
    return None


def stage_callbacks(log: LogWriter) -> list:
    """The Trainer callbacks every stage uses: the JSONL log, and the manifest written into each
    checkpoint (every file's size and sha256) once the Trainer has finished saving it, the mark
    of a complete checkpoint that `last_complete_checkpoint` checks before a resume."""
    from transformers import TrainerCallback

    class CheckpointManifest(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_checkpoint_manifest(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return [log.callback, CheckpointManifest()]


def write_checkpoint_manifest(folder: Path) -> None:
    """Record every file of a checkpoint folder (its sha256 and size) in its manifest."""
    from compbench.core.io import sha256_file, write_json_atomic

    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKPOINT_MANIFEST}
    write_json_atomic(folder / CHECKPOINT_MANIFEST, {"files": files})


class TokenizedRows:
    """Labelled texts tokenized as the Trainer reads them (a row at a time), so a short run does
    not tokenize a whole split first (SST-2: 67,349 rows for a run that may read 320). The
    Trainer samples indices from the length alone, so the rows a run reads, and its numbers,
    are those of tokenizing everything up front."""

    def __init__(self, rows, tokenizer, max_length: int):
        self.rows, self.tokenizer, self.max_length = rows, tokenizer, max_length

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[int(index)]
        encoded = self.tokenizer(row["text"], truncation=True, max_length=self.max_length)
        return {**encoded, "label": row["label"]}


def classification_data(config, tokenizer, num_labels: int) -> tuple[TokenizedRows, TokenizedRows]:
    """(train, held-out) rows of the config's classification dataset: the training rows shuffled
    with its seed and cut to `train_rows`, the held-out ones to `eval_rows`, tokenized as read."""
    from compbench.tasks.classification import classification_splits

    train, held_out, _ = classification_splits(config.dataset, num_labels)
    train = train.shuffle(seed=config.seed)
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    if config.eval_rows:
        held_out = held_out.select(range(min(config.eval_rows, len(held_out))))
    return (TokenizedRows(train, tokenizer, config.max_length),
            TokenizedRows(held_out, tokenizer, config.max_length))


def trainer_arguments(config, checkpoints: Path, device: str) -> dict[str, Any]:
    """The Trainer arguments both heads share."""
    every = "steps" if config.eval_steps else "epoch"
    best = "f1_micro" if config.head == "classification" else "eval_loss"
    return dict(
        output_dir=str(checkpoints), learning_rate=config.learning_rate,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, seed=config.seed, data_seed=config.seed,
        eval_strategy=every, save_strategy=every, eval_steps=config.eval_steps,
        save_steps=config.eval_steps, logging_steps=1, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=best,
        greater_is_better=config.head == "classification", report_to=[],
        use_cpu=not device.startswith("cuda"), include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0)


class LogWriter:
    """Writes the Trainer's log history as JSONL after every log event (atomically), so the
    file always matches the state a resume would continue from."""

    def __init__(self, path: Path):
        from transformers import TrainerCallback

        writer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                writer.start_tokens = state.num_input_tokens_seen  # > 0 when resumed

            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.is_world_process_zero:  # data-parallel: one writer
                    writer.write(state.log_history)

        self.path = path
        self.start_tokens = 0
        self.callback = Callback()

    def write(self, history: list[dict]) -> None:
        from compbench.core.io import write_text_atomic

        write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in history))


def resume_point(output_dir: Path, resume: bool) -> tuple[Path, Path | None]:
    """The run's checkpoint folder and, with `resume`, its last complete checkpoint; an error when
    a fresh run would mix with an earlier run's checkpoints, or when there is nothing to resume."""
    checkpoints = output_dir / "checkpoints"
    if not resume and any(checkpoints.glob("checkpoint-*")):
        raise CompbenchError(f"{output_dir} holds checkpoints of an earlier run; pass --resume to "
                             "continue it, or choose another --output-dir")
    if not resume:
        return checkpoints, None
    start_from = last_complete_checkpoint(checkpoints)
    if start_from is None:
        raise CompbenchError(f"--resume: {checkpoints} holds no complete checkpoint to continue from; "
                             "run without --resume to train from the start")
    return checkpoints, start_from


def train_and_save(trainer, log: LogWriter, arguments: dict[str, Any], start_from: Path | None,
                   saved_dir: Path, save, initial: dict[str, float] | None = None) -> TrainingResult:
    """Train (from `start_from`), then on the main process write the log and `save()` the
    result into `saved_dir`; what the run measured, with the best evaluation's metrics."""
    import torch

    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(start_from) if start_from else None)
    seconds = time.perf_counter() - started
    state = trainer.state
    main_process = trainer.is_world_process_zero()
    if main_process:
        log.write(state.log_history)
        save()
    best = best_eval(state.log_history, arguments["metric_for_best_model"],
                      arguments["greater_is_better"])
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainingResult(
        metrics=best, initial_metrics=initial, best_checkpoint=state.best_model_checkpoint,
        saved_dir=saved_dir, log_path=log.path, history=list(state.log_history),
        steps=state.global_step, seconds=seconds, train_tokens=int(state.num_input_tokens_seen),
        tokens_per_s=(state.num_input_tokens_seen - log.start_tokens) / seconds if seconds else None,
        train_rows=len(trainer.train_dataset), eval_rows=len(trainer.eval_dataset),
        resumed_from=str(start_from) if start_from else None,
        processes=trainer.args.world_size, main_process=main_process)


def best_eval(history: list[dict], metric: str, higher: bool) -> dict[str, float]:
    """The held-out metrics of the best evaluation in the log (the checkpoint kept)."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    evals = [row for row in history if key in row]
    if not evals:
        raise CompbenchError("training ended before its first evaluation; raise --max-steps or "
                             "lower --eval-steps")
    return named((max if higher else min)(evals, key=lambda r: r[key]))


def named(row: dict[str, Any]) -> dict[str, float]:
    """An evaluation's metrics without the `eval_` prefix or timings, with its step and, for a
    loss, the perplexity exp(loss)."""
    metrics = {k.removeprefix("eval_"): float(v) for k, v in row.items()
               if k.startswith("eval_") and isinstance(v, (int, float))
               and not k.endswith(("_runtime", "_per_second", "_time", "num_tokens"))}
    metrics["step"] = row.get("step", 0)
    if "loss" in metrics and "f1_micro" not in metrics:  # a language-modelling loss
        metrics["perplexity"] = math.exp(metrics["loss"])
    return metrics


def save_atomic(peft_model, tokenizer, folder: Path) -> None:
    """The adapter (and tokenizer) via a staging folder renamed into place."""
    from compbench.core.io import staging_path

    staging = staging_path(folder)
    peft_model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def read_config_file(path: str, keys: tuple[str, ...], command: str) -> dict[str, Any]:
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


def check_types(values: dict[str, Any], wholes: tuple[str, ...], numbers: tuple[str, ...]) -> None:
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


def held_out_task(config, metrics: dict[str, float], eval_rows: int) -> tuple[str, TaskResult]:
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


def training_block(result: TrainingResult, train_seconds: float, peak_rss_bytes: int,
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


def stage_record(stage: str, artifact, identity: dict[str, Any], held_out: tuple[str, TaskResult], *,
                 eval_rows: int | None, head: str, started: float, load_seconds: float,
                 peak_rss_bytes: int, env: dict, training: dict[str, Any], added_bytes: int = 0,
                 checkpoint_bytes: int | None = None):
    """A stage's results record, in `compbench eval`'s schema: the trained model's identity, its
    size (with `added_bytes`, an adapter's), the held-out task block and the `training` block."""
    from compbench.records.record import SCHEMA_VERSION, RunRecord, Timing

    task, task_result = held_out
    return RunRecord(
        status="ok", run_key=identity["key"], model=artifact.model_block(), artifact=identity,
        settings={"stage": stage, "tasks": [task], "limit": eval_rows, "head": head},
        compression=artifact.compression_info(added_bytes=added_bytes, checkpoint_bytes=checkpoint_bytes),
        tasks={task: task_result},
        timing=Timing(started_at=started, wall_seconds=time.time() - started,
                      load_and_compress_seconds=load_seconds, peak_rss_mb=peak_rss_bytes / 2**20),
        env=env, training=training, schema_version=SCHEMA_VERSION)
