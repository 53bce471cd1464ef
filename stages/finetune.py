"""The fine-tuning stage: a LoRA adapter on a (compressed) base, trained with the transformers
`Trainer` (classification head) or trl's `SFTTrainer` (causal-LM SFT, loss on the answer only).

    config = FinetuneConfig(head="classification", dataset="kasut_math", lora=LoraSettings(r=16))
    result = finetune(model, tokenizer, config, Path("runs/int8-r16"))

What is ours: the data (stages/data.py), which layers carry the adapter (stages/lora.py), and
the plumbing both stages share (stages/training.py: a checkpoint counts only once complete).
Training, evaluation, checkpoints, resuming (optimizer, scheduler, RNG and data position) are
the Trainer's. The command's side (the base built, the results record) is finetune_run.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError
from compbench.stages.lora import LoraSettings, attach_lora
from compbench.stages.training import (
    LogWriter,
    TrainingResult,
    classification_data,
    named,
    resume_point,
    save_atomic,
    stage_callbacks,
    train_and_save,
    trainer_arguments,
)
from compbench.tasks.classification import classification_metrics

HEADS = ("classification", "sft")


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


def _sft_data(config: FinetuneConfig, tokenizer):
    from compbench.stages.data import mix_sft

    train, held_out = mix_sft(dict(config.mix), config.seed, config.held_out_fraction,
                              chat=tokenizer.chat_template is not None)
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    if config.eval_rows:
        held_out = held_out.select(range(min(config.eval_rows, len(held_out))))
    return train.remove_columns("source"), held_out.remove_columns("source")


def finetune(model, tokenizer, config: FinetuneConfig, output_dir: Path, *, resume: bool = False,
             device: str = "cpu") -> TrainingResult:
    """Train a LoRA adapter on `model` (a compressed base; a sequence-classification model for
    the classification head) and keep the best checkpoint's adapter in `output_dir/adapter`.
    With `resume`, training continues from the last complete checkpoint in `output_dir`."""

    checkpoints, start_from = resume_point(output_dir, resume)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.head == "classification":
        train, held_out = classification_data(config, tokenizer, model.config.num_labels)
    else:
        train, held_out = _sft_data(config, tokenizer)
    peft_model = attach_lora(model, config.lora, config.task_type, config.seed)
    log = LogWriter(output_dir / "training_log.jsonl")
    arguments = trainer_arguments(config, checkpoints, device)
    if config.head == "classification":
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        trainer = Trainer(model=peft_model, args=TrainingArguments(**arguments),
                          train_dataset=train, eval_dataset=held_out, processing_class=tokenizer,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=classification_metrics, callbacks=stage_callbacks(log))
    else:
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=peft_model, train_dataset=train, eval_dataset=held_out,
                             processing_class=tokenizer, callbacks=stage_callbacks(log),
                             args=SFTConfig(**arguments, max_length=config.max_length,
                                            completion_only_loss=True, packing=False))
    if config.head == "sft":  # trl drops the rows whose answer truncation cut away
        train, held_out = _kept_rows(trainer, len(train), len(held_out), config.max_length)
    initial = None
    if config.head == "sft":  # the base's own held-out loss, which training should lower
        initial = named({"step": 0, **trainer.evaluate()})
    adapter_dir = output_dir / "adapter"
    return train_and_save(trainer, log, arguments, start_from, adapter_dir,
                          lambda: save_atomic(peft_model, tokenizer, adapter_dir), initial)


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


