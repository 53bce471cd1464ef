"""The fine-tuning stage: a LoRA adapter on a (compressed) base, trained with the transformers
`Trainer` (classification head) or trl's `SFTTrainer` (causal-LM SFT, loss on the answer only).

    config = FinetuneConfig(head="classification", dataset="kasut_math", lora=LoraSettings(r=16))
    result = finetune(model, tokenizer, config, Path("runs/int8-r16"))

What is ours: the data (stages/data.py), which layers carry the adapter (stages/lora.py), and
that a checkpoint counts only once complete (`last_complete_checkpoint`). Training, evaluation,
checkpoints, resuming (optimizer, scheduler, RNG and data position) are the Trainer's.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError
from compbench.stages.lora import LoraSettings, attach_lora

HEADS = ("classification", "sft")
STATE_FILE = "trainer_state.json"  # the Trainer writes it last into a checkpoint


@dataclass(frozen=True)
class FinetuneConfig:
    """What to train and how; every field is part of the run's identity."""

    head: str = "classification"  # "classification" (a sequence-classification head) or "sft"
    dataset: str = "kasut_math"  # classification: kasut_math, sst2, commonsense_qa
    mix: tuple[tuple[str, float], ...] = ()  # sft: (dataset, fraction of its train split) pairs
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4
    epochs: float = 1.0  # passes over the training rows (ignored when max_steps is set)
    max_steps: int | None = None  # optimizer steps; None: `epochs` decides
    batch_size: int = 8  # rows per device per forward
    grad_accum: int = 1  # forwards per optimizer step
    seed: int = 0  # adapter and head init, dropout, data order
    eval_steps: int | None = None  # evaluate (and checkpoint) every N steps; None: each epoch
    max_length: int = 256  # tokens per row (longer rows are truncated)
    train_rows: int | None = None  # the first N training rows (after the seeded mix); None: all
    eval_rows: int | None = None  # the first N held-out rows; None: all
    held_out_fraction: float = 0.05  # sft: the seeded part of the mix held out for eval loss
    version: int = 1  # bump when training with the same config changes

    def __post_init__(self):
        if self.head not in HEADS:
            raise CompbenchError(f"head must be one of {', '.join(HEADS)}, got '{self.head}'")
        if self.head == "sft" and not self.mix:
            raise CompbenchError("head sft needs --mix, e.g. gsm8k=1.0,commonsense_qa=0.5")
        checks = [("learning_rate", self.learning_rate > 0, "> 0"), ("epochs", self.epochs > 0, "> 0"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("grad_accum", self.grad_accum >= 1, ">= 1"),
                  ("max_length", self.max_length >= 8, ">= 8"),
                  ("held_out_fraction", 0 < self.held_out_fraction < 1, "in (0, 1)")]
        checks += [(name, getattr(self, name) is None or getattr(self, name) >= 1, ">= 1")
                   for name in ("max_steps", "eval_steps", "train_rows", "eval_rows")]
        for name, ok, allowed in checks:
            if not ok:
                raise CompbenchError(f"{name} must be {allowed}, got {getattr(self, name)}")

    @property
    def task_type(self) -> str:
        return "SEQ_CLS" if self.head == "classification" else "CAUSAL_LM"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mix"] = dict(self.mix)
        return data


@dataclass
class FinetuneResult:
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


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-N` whose trainer state was written (the Trainer writes it last);
    any newer, incomplete one (a run killed while saving) is removed, so that resuming never
    reads half a checkpoint."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in found:
        try:
            json.loads((path / STATE_FILE).read_text())
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return None


def _classification_data(config: FinetuneConfig, tokenizer, num_labels: int):
    from compbench.stages.data import classification_splits

    train, held_out, _ = classification_splits(config.dataset, num_labels)
    train = train.shuffle(seed=config.seed)
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    if config.eval_rows:
        held_out = held_out.select(range(min(config.eval_rows, len(held_out))))

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=config.max_length)

    return (train.map(encode, batched=True, remove_columns=["text"]),
            held_out.map(encode, batched=True, remove_columns=["text"]))


def _sft_data(config: FinetuneConfig, tokenizer):
    from compbench.stages.data import mix_sft

    train, held_out = mix_sft(dict(config.mix), config.seed, config.held_out_fraction,
                              chat=tokenizer.chat_template is not None)
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    if config.eval_rows:
        held_out = held_out.select(range(min(config.eval_rows, len(held_out))))
    return train.remove_columns("source"), held_out.remove_columns("source")


def classification_metrics(eval_prediction) -> dict[str, float]:
    """Accuracy and F1 micro/macro of the argmax class (the Trainer's `compute_metrics`)."""
    from sklearn.metrics import accuracy_score, f1_score

    logits, labels = eval_prediction
    predicted = logits.argmax(-1)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "f1_micro": float(f1_score(labels, predicted, average="micro")),
            "f1_macro": float(f1_score(labels, predicted, average="macro"))}


def _arguments(config: FinetuneConfig, checkpoints: Path, device: str) -> dict[str, Any]:
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


class _LogWriter:
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


def finetune(model, tokenizer, config: FinetuneConfig, output_dir: Path, *, resume: bool = False,
             device: str = "cpu") -> FinetuneResult:
    """Train a LoRA adapter on `model` (a compressed base; a sequence-classification model for
    the classification head) and keep the best checkpoint's adapter in `output_dir/adapter`.
    With `resume`, training continues from the last complete checkpoint in `output_dir`."""

    checkpoints, start_from = resume_point(output_dir, resume)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.head == "classification":
        train, held_out = _classification_data(config, tokenizer, model.config.num_labels)
    else:
        train, held_out = _sft_data(config, tokenizer)
    peft_model = attach_lora(model, config.lora, config.task_type, config.seed)
    log = _LogWriter(output_dir / "training_log.jsonl")
    arguments = _arguments(config, checkpoints, device)
    if config.head == "classification":
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        trainer = Trainer(model=peft_model, args=TrainingArguments(**arguments),
                          train_dataset=train, eval_dataset=held_out, processing_class=tokenizer,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=classification_metrics, callbacks=[log.callback])
    else:
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=peft_model, train_dataset=train, eval_dataset=held_out,
                             processing_class=tokenizer, callbacks=[log.callback],
                             args=SFTConfig(**arguments, max_length=config.max_length,
                                            completion_only_loss=True, packing=False))
    if config.head == "sft":  # trl drops the rows whose answer truncation cut away
        train, held_out = _kept_rows(trainer, len(train), len(held_out), config.max_length)
    initial = None
    if config.head == "sft":  # the base's own held-out loss, which training should lower
        initial = _named({"step": 0, **trainer.evaluate()})
    adapter_dir = output_dir / "adapter"
    return train_and_save(trainer, log, arguments, start_from, adapter_dir,
                          lambda: _save_atomic(peft_model, tokenizer, adapter_dir), initial)


def resume_point(output_dir: Path, resume: bool) -> tuple[Path, Path | None]:
    """The run's checkpoint folder and, with `resume`, its last complete checkpoint; an error when
    a fresh run would mix with an earlier run's checkpoints."""
    checkpoints = output_dir / "checkpoints"
    if not resume and any(checkpoints.glob("checkpoint-*")):
        raise CompbenchError(f"{output_dir} holds checkpoints of an earlier run; pass --resume to "
                             "continue it, or choose another --output-dir")
    return checkpoints, last_complete_checkpoint(checkpoints) if resume else None


def train_and_save(trainer, log: _LogWriter, arguments: dict[str, Any], start_from: Path | None,
                   saved_dir: Path, save, initial: dict[str, float] | None = None) -> FinetuneResult:
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
    best = _best_eval(state.log_history, arguments["metric_for_best_model"],
                      arguments["greater_is_better"])
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return FinetuneResult(
        metrics=best, initial_metrics=initial, best_checkpoint=state.best_model_checkpoint,
        saved_dir=saved_dir, log_path=log.path, history=list(state.log_history),
        steps=state.global_step, seconds=seconds, train_tokens=int(state.num_input_tokens_seen),
        tokens_per_s=(state.num_input_tokens_seen - log.start_tokens) / seconds if seconds else None,
        train_rows=len(trainer.train_dataset), eval_rows=len(trainer.eval_dataset),
        resumed_from=str(start_from) if start_from else None,
        processes=trainer.args.world_size, main_process=main_process)


def _kept_rows(trainer, train_rows: int, held_out_rows: int, max_length: int):
    """The SFT rows trl kept after truncating to `max_length` (a row whose answer was cut away
    entirely is dropped): an error when none is left on a side, a line when some were lost."""
    train, held_out = trainer.train_dataset, trainer.eval_dataset
    sides = (("training", len(train), train_rows), ("held-out", len(held_out), held_out_rows))
    for name, kept, given in sides:
        if kept == 0:
            raise CompbenchError(f"--max-length {max_length}: the answer of every {name} row lies beyond "
                                 "it (trl drops rows left with no answer token); raise --max-length")
        if kept < given:
            print(f"{given - kept} of {given} {name} rows dropped: their answers start after "
                  f"--max-length {max_length} tokens", flush=True)
    return train, held_out


def _best_eval(history: list[dict], metric: str, higher: bool) -> dict[str, float]:
    """The held-out metrics of the best evaluation in the log (the checkpoint kept)."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    evals = [row for row in history if key in row]
    if not evals:
        raise CompbenchError("training ended before its first evaluation; raise --max-steps or "
                             "lower --eval-steps")
    return _named((max if higher else min)(evals, key=lambda r: r[key]))


def _named(row: dict[str, Any]) -> dict[str, float]:
    """An evaluation's metrics without the `eval_` prefix or timings, with its step and, for a
    loss, the perplexity exp(loss)."""
    metrics = {k.removeprefix("eval_"): float(v) for k, v in row.items()
               if k.startswith("eval_") and isinstance(v, (int, float))
               and not k.endswith(("_runtime", "_per_second", "_time", "num_tokens"))}
    metrics["step"] = row.get("step", 0)
    if "loss" in metrics and "f1_micro" not in metrics:  # a language-modelling loss
        metrics["perplexity"] = math.exp(metrics["loss"])
    return metrics


def _save_atomic(peft_model, tokenizer, folder: Path) -> None:
    """The adapter (and tokenizer) via a staging folder renamed into place."""
    from compbench.core.io import staging_path

    staging = staging_path(folder)
    peft_model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
