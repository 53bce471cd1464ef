"""Classification datasets: labelled texts for a classification head, their held-out rows, and
the metrics both the finetune stage and classifier scoring report.

Rows come from the same local copies the tasks read (`<data dir>/<dataset>/<split>.jsonl`,
checked row by row), else from the hub. The held-out part of a dataset is the one its lm-eval
task scores (KASUT: the fixed 90/10 split), so a fine-tuned head and the zero-shot task are
measured on the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compbench.errors import CompbenchError
from compbench.tasks.data import load_splits


def choices_text(row: dict) -> str:
    return "\n".join(f"{label}. {text}" for label, text in
                     zip(row["choices"]["label"], row["choices"]["text"], strict=True))


def csqa_label(row: dict) -> int:
    return row["choices"]["label"].index(row["answerKey"])


@dataclass(frozen=True)
class ClassificationData:
    """A labelled dataset: where its rows are, how a row becomes (text, label), its classes."""

    path: str  # hub id, used where no data dir is set
    local_name: str  # <data dir>/<local_name>/<split>.jsonl
    train_split: str
    eval_split: str | None  # None: the held-out part is split off the train split (KASUT)
    fields: dict[str, str]
    text: Callable[[dict], str]
    label: Callable[[dict], int]
    num_labels: int
    hub_name: str | None = None


CLASSIFICATION: dict[str, ClassificationData] = {
    "kasut_math": ClassificationData(
        "kaggle/classification-of-math-problems-by-kasut-academy", "kasut_math", "train", None,
        {"question": "str", "label": "int"}, lambda r: r["question"].strip(), lambda r: r["label"], 8),
    "sst2": ClassificationData(
        "nyu-mll/glue", "sst2", "train", "validation", {"sentence": "str", "label": "int"},
        lambda r: r["sentence"].strip(), lambda r: r["label"], 2, hub_name="sst2"),
    "commonsense_qa": ClassificationData(
        "tau/commonsense_qa", "commonsense_qa", "train", "validation",
        {"question": "str", "choices": "dict", "answerKey": "str"},
        lambda r: f"{r['question']}\n{choices_text(r)}", csqa_label, 5),
}


def unknown_dataset(name: str, known, what: str) -> CompbenchError:
    return CompbenchError(f"unknown {what} dataset '{name}'; known: {', '.join(known)}")


def classification_splits(name: str, num_labels: int | None = None):
    """(train, held-out) `datasets.Dataset`s with `text` and `label` columns, and the class
    count; a label outside the head's `num_labels` classes is an error naming the row."""
    import datasets

    if name not in CLASSIFICATION:
        raise unknown_dataset(name, CLASSIFICATION, "classification")
    spec = CLASSIFICATION[name]
    num_labels = num_labels or spec.num_labels
    splits = [spec.train_split] + ([spec.eval_split] if spec.eval_split else [])
    loaded = load_splits(spec.path, spec.local_name, splits, spec.hub_name, spec.fields)
    if spec.eval_split is None:
        from compbench.tasks.kasut import kasut_split

        train, held_out = kasut_split(loaded[spec.train_split])
    else:
        train, held_out = loaded[spec.train_split], loaded[spec.eval_split]
    parts = []
    for split, rows in (("train", train), ("held-out", held_out)):
        table = [{"text": spec.text(row), "label": spec.label(row)} for row in rows]
        bad = next((i for i, row in enumerate(table) if not 0 <= row["label"] < num_labels), None)
        if bad is not None:
            raise CompbenchError(f"{name} {split} row {bad}: label {table[bad]['label']} does not fit "
                                 f"a head of {num_labels} classes (labels 0-{num_labels - 1})")
        parts.append(datasets.Dataset.from_list(table))
    return parts[0], parts[1], num_labels


def classification_metrics(eval_prediction) -> dict[str, float]:
    """Accuracy and F1 micro/macro of the argmax class (the Trainer's `compute_metrics`)."""
    from sklearn.metrics import accuracy_score, f1_score

    logits, labels = eval_prediction
    predicted = logits.argmax(-1)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "f1_micro": float(f1_score(labels, predicted, average="micro")),
            "f1_macro": float(f1_score(labels, predicted, average="macro"))}
