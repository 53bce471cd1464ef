"""Dataset hooks of the classification and MMLU tasks: KASUT's fixed split, MMLU's subset and
few-shot prompts, and their per-class / per-category metrics."""

from __future__ import annotations

import numpy as np
from lm_eval.tasks.mmlu._generate_configs import SUBJECTS as MMLU_CATEGORY

from compbench.tasks.data import load_splits
from compbench.tasks.kasut import TOPICS, kasut_split, topic_slug
from compbench.tasks.metrics import class_f1

MMLU_CATEGORIES = ("stem", "humanities", "social_sciences", "other")


def load_kasut(path: str, local_name: str, splits: list[str], name: str | None = None,
               fields: dict[str, str] | None = None, gold: dict | None = None, **_metadata):
    """The labelled train.csv, split deterministically 90/10; the 10% part is the test split."""
    import datasets

    full = load_splits(path, local_name, splits, name=name, fields=fields, gold=gold)
    train, test = kasut_split(full["train"])
    return datasets.DatasetDict({"train": train, "test": test})


def _predicted(results) -> int:
    return int(np.argmax([loglikelihood for loglikelihood, _ in results]))


def kasut_results(doc, results) -> dict:
    """acc, and (gold, prediction) pairs for the corpus-level F1 metrics."""
    gold, pred = int(doc["label"]), _predicted(results)
    pair = (gold, pred)
    return {"acc": float(gold == pred), "f1_micro": pair, "f1_macro": pair,
            **{f"f1_{topic_slug(topic)}": pair for topic in TOPICS}}


# The per-topic F1 aggregations the YAML names (`!function choices.f1_algebra`, …).
for _label, _topic in enumerate(TOPICS):
    globals()[f"f1_{topic_slug(_topic)}"] = class_f1(_label)


def _mmlu_question(doc) -> str:
    options = "".join(f"{letter}. {choice}\n" for letter, choice in zip("ABCD", doc["choices"],
                                                                        strict=True))
    return f"{doc['question'].strip()}\n{options}Answer:"


def load_mmlu(path: str, local_name: str, splits: list[str], name: str | None = None,
              fields: dict[str, str] | None = None, gold: dict | None = None, per_subject: int = 5,
              num_shots: int = 2, **_metadata):
    """MMLU test questions, the first `per_subject` of each subject (0: all), each with a prompt
    holding the first `num_shots` dev questions of its subject, as lm-eval's mmlu k-shot does."""
    import datasets

    data = load_splits(path, local_name, splits, name=name, fields=fields, gold=gold)
    shots: dict[str, list[dict]] = {}
    for row in data["dev"]:
        shots.setdefault(row["subject"], []).append(row)
    taken: dict[str, int] = {}
    rows = []
    for row in data["test"]:
        subject = row["subject"]
        if per_subject and taken.get(subject, 0) >= per_subject:
            continue
        taken[subject] = taken.get(subject, 0) + 1
        header = (f"The following are multiple choice questions (with answers) about "
                  f"{subject.replace('_', ' ')}.\n\n")
        examples = "".join(f"{_mmlu_question(s)} {'ABCD'[s['answer']]}\n\n"
                           for s in shots.get(subject, [])[:num_shots])
        rows.append({**row, "category": MMLU_CATEGORY[subject],
                     "prompt": header + examples + _mmlu_question(row)})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def mmlu_results(doc, results) -> dict:
    """acc overall, and per category a (correct, in-category) pair averaged over its members."""
    correct = float(_predicted(results) == int(doc["answer"]))
    return {"acc": correct,
            **{f"acc_{c}": (correct, doc["category"] == c) for c in MMLU_CATEGORIES}}
