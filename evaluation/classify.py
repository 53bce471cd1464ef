"""Score a sequence classifier on a classification dataset's held-out split.

lm-eval tasks score a language model's loglikelihoods; a classification head (the encoder
`minilm-l6-v2` with an SST-2 head, or a decoder's `score` head, exported merged by `compbench
export --adapter DIR --merge`) gives class logits that no lm-eval task reads. This is the small
path that does: the argmax of the head's logits on the rows the finetune stage holds out (sst2:
its validation split; kasut_math: the task's fixed 10%), accuracy and F1, and the speed of the
batched forward (samples/s, milliseconds per batch). Records name it as their scorer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from compbench.errors import CompbenchError
from compbench.records.record import MetricResult, TaskResult

SCORER = "compbench-classifier"
VERSION = 1  # bump when scoring changes a number


@dataclass(frozen=True)
class ClassifierScore:
    """One dataset's held-out scores and the speed of the forward passes that made them."""

    task: TaskResult
    samples: int
    tokens: int  # non-padding tokens fed
    seconds: float  # forward passes only (tokenization excluded)
    samples_per_s: float
    latency_ms_per_batch: float  # median over the batches


def is_classifier(model) -> bool:
    """A transformers sequence classifier (`*ForSequenceClassification`)."""
    return type(model).__name__.endswith("ForSequenceClassification")


def check_datasets(tasks: tuple[str, ...], model_name: str) -> None:
    """A classifier is scored on classification datasets only; anything else is one line."""
    from compbench.tasks.classification import CLASSIFICATION

    unknown = [t for t in tasks if t not in CLASSIFICATION]
    if unknown:
        raise CompbenchError(
            f"{model_name} is a sequence classifier: it is scored on the held-out rows of a "
            f"classification dataset ({', '.join(CLASSIFICATION)}), not on {', '.join(unknown)}")


def rows_for(limit: int | float | None, total: int) -> int:
    """lm-eval's meaning of `--limit`: a count, or a fraction (< 1) of the split, rounded up."""
    if limit is None:
        return total
    return min(total, math.ceil(total * limit) if limit < 1 else int(limit))


def score_classifier(model, tokenizer, dataset: str, *, limit: int | float | None = None,
                     batch_size: int = 32, max_length: int = 512, progress: bool = True) -> ClassifierScore:
    """Accuracy and F1 (micro and macro) of `model` on `dataset`'s held-out rows, batched in
    their order, with the forward passes timed after one warm-up batch."""
    import torch
    from tqdm import tqdm

    from compbench.tasks.classification import classification_metrics, classification_splits

    num_labels = model.config.num_labels
    held_out = classification_splits(dataset, num_labels)[1]
    count = rows_for(limit, len(held_out))
    texts, labels = held_out["text"][:count], held_out["label"][:count]
    device = next(model.parameters()).device

    def encode(start: int):
        return tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                         max_length=max_length, return_tensors="pt").to(device)

    logits, latencies, tokens = [], [], 0
    with torch.inference_mode():
        model(**encode(0))  # warm-up: first-call allocations are not the model's speed
        for start in tqdm(range(0, count, batch_size), desc=f"{dataset} ({count} rows)",
                          disable=not progress, leave=False):
            batch = encode(start)
            began = time.perf_counter()
            logits.append(model(**batch).logits.float().cpu())
            latencies.append(time.perf_counter() - began)
            tokens += int(batch["attention_mask"].sum())
    metrics = classification_metrics((torch.cat(logits).numpy(), torch.tensor(labels).numpy()))
    accuracy = metrics["accuracy"]
    stderr = math.sqrt(accuracy * (1 - accuracy) / (count - 1)) if count > 1 else None
    task = TaskResult(
        {"acc,none": MetricResult(accuracy, stderr, True),
         "f1_micro,none": MetricResult(metrics["f1_micro"], None, True),
         "f1_macro,none": MetricResult(metrics["f1_macro"], None, True)},
        version=f"{SCORER}-{VERSION}", n_original=len(held_out), n_effective=count,
        headline="acc,none", label=f"{dataset} acc",
        protocol={"scorer": SCORER, "rows": "held-out", "batch_size": batch_size,
                  "max_length": max_length, "num_labels": num_labels})
    seconds = sum(latencies)
    return ClassifierScore(task=task, samples=count, tokens=tokens, seconds=seconds,
                           samples_per_s=count / seconds if seconds else math.nan,
                           latency_ms_per_batch=1000 * sorted(latencies)[len(latencies) // 2])
