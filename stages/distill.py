"""Knowledge distillation: a (compressed) student learns from its teacher, on the Trainer.

    loss = ce * CE(student logits, labels)
         + kl * T^2 * KL(softmax(teacher / T) || softmax(student / T))
         + hidden * sum over mapped layers of MSE(P(student hidden state), teacher hidden state)
         + attention * sum over mapped layers of MSE(student attention map, teacher's)

Hinton et al.'s soft targets with TinyBERT's intermediate-layer losses (the terms TextBrewer
offered, on maintained parts): the terms are averaged over the positions that carry a label (a
classifier: every row; a causal LM: every non-padding token). `P` is a learned linear map where
the student's hidden width differs from the teacher's, else the identity. Only `compute_loss` is
ours; checkpoints, resume, evaluation and logging are the Trainer's, as in stages/finetune.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compbench.errors import CompbenchError

HEADS = ("classification", "causal")
CORPORA = ("wikitext2",)  # causal distillation text (the calibration corpus, not the test text)


@dataclass(frozen=True)
class DistillLoss:
    """The weights of the loss terms, the temperature and which layers are matched."""

    ce: float = 0.5  # cross-entropy with the labels
    kl: float = 0.5  # KL to the teacher's softened distribution (times T^2)
    hidden: float = 0.0  # MSE between mapped hidden states
    attention: float = 0.0  # MSE between mapped attention maps (needs eager attention)
    temperature: float = 2.0  # T: softens both distributions
    # (student, teacher) hidden-state indices (0 = embeddings, i = after layer i); () = every
    # student layer matched to the teacher layer at the same relative depth
    layer_map: tuple[tuple[int, int], ...] = field(default=())
    version: int = 1  # bump when a term's definition changes

    def __post_init__(self):
        for name in ("ce", "kl", "hidden", "attention"):
            if getattr(self, name) < 0:
                raise CompbenchError(f"distillation weight {name} must be >= 0, got {getattr(self, name)}")
        if self.ce + self.kl + self.hidden + self.attention == 0:
            raise CompbenchError("every distillation weight is 0: set ce, kl, hidden or attention above 0")
        if self.temperature <= 0:
            raise CompbenchError(f"temperature must be > 0, got {self.temperature}")


def parse_layer_map(text: str) -> tuple[tuple[int, int], ...]:
    """`0:0,3:6,6:12` -> ((0, 0), (3, 6), (6, 12)): student index : teacher index."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        student, sep, teacher = part.partition(":")
        if not (sep and student.isdigit() and teacher.isdigit()):
            raise CompbenchError(f"layer map: '{part}' is not STUDENT:TEACHER (hidden-state indices, "
                                 "e.g. 0:0,3:6,6:12)")
        pairs.append((int(student), int(teacher)))
    return tuple(pairs)


def layer_pairs(loss: DistillLoss, student_layers: int, teacher_layers: int) -> tuple[tuple[int, int], ...]:
    """The hidden-state pairs matched: the configured map (checked against both depths), else
    student layer i with teacher layer round(i * teacher_layers / student_layers)."""
    if not loss.layer_map:
        return tuple((i, round(i * teacher_layers / student_layers)) for i in range(student_layers + 1))
    for student, teacher in loss.layer_map:
        if student > student_layers or teacher > teacher_layers:
            raise CompbenchError(f"layer map {student}:{teacher}: the student has hidden states 0-"
                                 f"{student_layers}, the teacher 0-{teacher_layers}")
    return loss.layer_map


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the positions where `mask` is true (`values` has one entry per position)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def kl_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL(teacher || student) of the softened distributions, per position, averaged."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = (teacher.exp() * (teacher - student)).sum(-1)
    return temperature ** 2 * _masked_mean(per_position, mask)


def hidden_term(student_states, teacher_states, pairs, projections: nn.ModuleList | None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the mapped pairs of the mean squared error per position (projected where the
    widths differ), averaged over the masked positions."""
    total = student_states[0].new_zeros((), dtype=torch.float32)
    for index, (s, t) in enumerate(pairs):
        student = student_states[s].float()
        if projections is not None:
            student = projections[index](student)
        per_position = (student - teacher_states[t].float()).pow(2).mean(-1)
        total = total + _masked_mean(per_position, mask)
    return total


def attention_term(student_maps, teacher_maps, pairs) -> torch.Tensor:
    """Sum over the mapped layers (hidden-state index i > 0 is layer i's map) of the MSE between
    attention maps, the heads averaged where the head counts differ."""
    total = student_maps[0].new_zeros((), dtype=torch.float32)
    for s, t in pairs:
        if s == 0 or t == 0:
            continue  # the embeddings have no attention map
        student, teacher = student_maps[s - 1].float(), teacher_maps[t - 1].float()
        if student.shape[1] != teacher.shape[1]:
            student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
        total = total + F.mse_loss(student, teacher)
    return total


def projections_for(student_width: int, teacher_width: int, pairs) -> nn.ModuleList | None:
    """Learned maps from the student's hidden width to the teacher's, one per pair (None when
    the widths agree)."""
    if student_width == teacher_width:
        return None
    return nn.ModuleList(nn.Linear(student_width, teacher_width, bias=False) for _ in pairs)


def distill_terms(student_out, teacher_out, labels: torch.Tensor, loss: DistillLoss, pairs,
                  projections: nn.ModuleList | None,
                  attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Each weighted term's unweighted value. A causal LM's logits predict the next token, so
    position i is scored against labels[i + 1] (as the model's own loss does) and only where
    that label is not -100; hidden states are compared at every real (non-padding) token."""
    student_logits, teacher_logits = student_out.logits, teacher_out.logits
    label_mask = None
    if student_logits.dim() == 3:  # causal LM
        student_logits, teacher_logits = student_logits[:, :-1], teacher_logits[:, :-1]
        labels = labels[:, 1:]
        label_mask = labels != -100
    terms = {}
    if loss.ce:
        terms["ce"] = F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]).float(),
                                      labels.reshape(-1), ignore_index=-100)
    if loss.kl:
        terms["kl"] = kl_term(student_logits, teacher_logits, loss.temperature, label_mask)
    if loss.hidden:
        terms["hidden"] = hidden_term(student_out.hidden_states, teacher_out.hidden_states, pairs,
                                      projections, attention_mask)
    if loss.attention:
        terms["attention"] = attention_term(student_out.attentions, teacher_out.attentions, pairs)
    return terms


def total_loss(terms: dict[str, torch.Tensor], loss: DistillLoss) -> torch.Tensor:
    """The weighted sum of the terms."""
    return sum(getattr(loss, name) * value for name, value in terms.items())


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from and how; every field is part of the run's identity."""

    head: str = "classification"  # classification (a dataset's labels) or causal (a text corpus)
    dataset: str = "sst2"  # classification: kasut_math, sst2, commonsense_qa; causal: wikitext2
    loss: DistillLoss = field(default_factory=DistillLoss)
    learning_rate: float = 5e-5
    epochs: float = 1.0  # passes over the training rows (ignored when max_steps is set)
    max_steps: int | None = None  # optimizer steps; None: `epochs` decides
    batch_size: int = 16  # rows per device per forward
    grad_accum: int = 1  # forwards per optimizer step
    seed: int = 0  # projection init, dropout, data order
    eval_steps: int | None = None  # evaluate (and checkpoint) every N steps; None: each epoch
    max_length: int = 128  # tokens per row (classification: truncation; causal: window length)
    train_rows: int | None = None  # the first N (shuffled) training rows; None: all
    eval_rows: int | None = None  # the first N held-out rows; None: all
    version: int = 1  # bump when training with the same config changes

    def __post_init__(self):
        from compbench.tasks.classification import CLASSIFICATION

        if self.head not in HEADS:
            raise CompbenchError(f"head must be one of {', '.join(HEADS)}, got '{self.head}'")
        known = CLASSIFICATION if self.head == "classification" else CORPORA
        if self.dataset not in known:
            raise CompbenchError(f"{self.head} distillation data must be one of {', '.join(known)}, "
                                 f"got '{self.dataset}'")
        checks = [("learning_rate", self.learning_rate > 0, "> 0"), ("epochs", self.epochs > 0, "> 0"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("grad_accum", self.grad_accum >= 1, ">= 1"),
                  ("max_length", self.max_length >= 8, ">= 8")]
        checks += [(name, getattr(self, name) is None or getattr(self, name) >= 1, ">= 1")
                   for name in ("max_steps", "eval_steps", "train_rows", "eval_rows")]
        for name, ok, allowed in checks:
            if not ok:
                raise CompbenchError(f"{name} must be {allowed}, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _corpus_windows(config: DistillConfig, tokenizer):
    """(train, held-out) windows of `max_length` tokens of the corpus, labels = inputs; the last
    10% of the windows are held out."""
    import datasets

    from compbench.tasks.calibration import calibration_text

    text = "\n\n".join(calibration_text(config.dataset))
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    windows = ids[: len(ids) // config.max_length * config.max_length].reshape(-1, config.max_length)
    split = int(len(windows) * 0.9)
    parts = []
    for rows in (windows[:split], windows[split:]):
        rows = rows.tolist()
        parts.append(datasets.Dataset.from_dict(
            {"input_ids": rows, "attention_mask": [[1] * config.max_length] * len(rows), "labels": rows}))
    train, held_out = parts
    train = train.shuffle(seed=config.seed)
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    if config.eval_rows:
        held_out = held_out.select(range(min(config.eval_rows, len(held_out))))
    return train, held_out


def _trainer_class():
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """The Trainer with a distillation loss: during training the weighted terms against the
        frozen teacher; at evaluation the student's own cross-entropy (its held-out loss)."""

        def __init__(self, *args, teacher: nn.Module, loss: DistillLoss, pairs, **kwargs):
            super().__init__(*args, **kwargs)
            # our loss is a mean per forward: let the Trainer divide it over accumulation steps
            self.model_accepts_loss_kwargs = False
            self.teacher, self.distill_loss, self.pairs = teacher, loss, pairs
            self.term_sums: dict[str, float] = {}
            self.term_count = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:
                outputs = model(**inputs)
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            loss = self.distill_loss
            flags = {"output_hidden_states": bool(loss.hidden), "output_attentions": bool(loss.attention)}
            labels = inputs["labels"]
            student = model(**{k: v for k, v in inputs.items() if k != "labels"}, **flags)
            with torch.no_grad():
                teacher = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"}, **flags)
            unwrapped = self.accelerator.unwrap_model(model)
            terms = distill_terms(student, teacher, labels, loss, self.pairs,
                                  getattr(unwrapped, "distill_projections", None),
                                  inputs.get("attention_mask"))
            for name, value in terms.items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value.detach())
            self.term_count += 1
            total = total_loss(terms, loss)
            return (total, student) if return_outputs else total

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            """Each term's mean since the last log beside the total loss."""
            if "loss" in logs and self.term_count:
                logs.update({f"loss_{k}": v / self.term_count for k, v in self.term_sums.items()})
                self.term_sums, self.term_count = {}, 0
            super().log(logs, *args, **kwargs)

    return DistillTrainer


def distill(student: nn.Module, teacher: nn.Module, tokenizer, config: DistillConfig, output_dir: Path,
            *, resume: bool = False, device: str = "cpu"):
    """Train `student` (a compressed copy of `teacher`, or any smaller model of its family) to
    match `teacher`; the best checkpoint's student is saved with `save_pretrained` in
    `output_dir/student`. Returns a `TrainingResult` whose `saved_dir` is that folder."""
    from compbench.stages.training import (
            LogWriter,
        classification_data,
        resume_point,
        save_atomic,
    stage_callbacks,
        train_and_save,
        trainer_arguments,
    )
    from compbench.tasks.classification import classification_metrics

    checkpoints, start_from = resume_point(output_dir, resume)
    if config.head == "classification":
        train, held_out = classification_data(config, tokenizer, student.config.num_labels)
        metrics = classification_metrics
    else:
        train, held_out = _corpus_windows(config, tokenizer)
        metrics = None
    text_student, text_teacher = student.config.get_text_config(), teacher.config.get_text_config()
    pairs = layer_pairs(config.loss, text_student.num_hidden_layers, text_teacher.num_hidden_layers)
    torch.manual_seed(config.seed)
    projections = projections_for(text_student.hidden_size, text_teacher.hidden_size, pairs)
    if projections is not None and config.loss.hidden:
        student.distill_projections = projections.to(next(student.parameters()).device)
    if config.loss.attention:  # attention maps exist only on the eager path
        for model in (student, teacher):
            model.set_attn_implementation("eager")
    teacher.eval().requires_grad_(False)
    student.train()
    log = LogWriter(output_dir / "training_log.jsonl")
    arguments = trainer_arguments(config, checkpoints, device)
    from transformers import DataCollatorWithPadding, TrainingArguments, default_data_collator

    classifying = config.head == "classification"
    collator = DataCollatorWithPadding(tokenizer) if classifying else default_data_collator
    trainer = _trainer_class()(
        model=student, args=TrainingArguments(**arguments), train_dataset=train,
        eval_dataset=held_out, processing_class=tokenizer, data_collator=collator, compute_metrics=metrics,
        callbacks=stage_callbacks(log), teacher=teacher, loss=config.loss, pairs=pairs)
    student_dir = output_dir / "student"

    def save():
        if hasattr(student, "distill_projections"):
            del student.distill_projections  # training-only: the saved student is a stock model
        save_atomic(student.eval(), tokenizer, student_dir)

    return train_and_save(trainer, log, arguments, start_from, student_dir, save)
