"""Training data for the fine-tuning stage: labelled texts for a classification head, and a
weighted mix of prompt/completion pairs for causal-LM SFT.

Rows come from the same local copies the tasks read (`<data dir>/<dataset>/<split>.jsonl`,
checked row by row), else from the hub. The held-out part of a classification dataset is the
one its lm-eval task scores (KASUT: the fixed 90/10 split), so a fine-tuned head and the
zero-shot task are measured on the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compbench.errors import CompbenchError
from compbench.tasks.data import load_splits

LETTERS = "ABCDEFGHIJ"


def _choices_text(row: dict) -> str:
    return "\n".join(f"{label}. {text}" for label, text in
                     zip(row["choices"]["label"], row["choices"]["text"], strict=True))


def _csqa_label(row: dict) -> int:
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
        lambda r: f"{r['question']}\n{_choices_text(r)}", _csqa_label, 5),
}


@dataclass(frozen=True)
class SFTData:
    """A dataset for SFT: where its train rows are and how a row becomes (prompt, completion)."""

    path: str
    local_name: str | None  # None: the hub only (no local copy is shipped)
    split: str
    fields: dict[str, str]
    prompt: Callable[[dict], str]
    completion: Callable[[dict], str]
    hub_name: str | None = None


SFT: dict[str, SFTData] = {
    "gsm8k": SFTData("openai/gsm8k", "gsm8k", "train", {"question": "str", "answer": "str"},
                     lambda r: r["question"], lambda r: r["answer"], hub_name="main"),
    "commonsense_qa": SFTData(
        "tau/commonsense_qa", "commonsense_qa", "train",
        {"question": "str", "choices": "dict", "answerKey": "str"},
        lambda r: f"{r['question']}\n{_choices_text(r)}\nAnswer:",
        lambda r: f"{r['answerKey']}. {r['choices']['text'][_csqa_label(r)]}"),
    "mmlu_aux": SFTData(
        "cais/mmlu", None, "train", {"question": "str", "choices": "list", "answer": "int"},
        lambda r: "\n".join([r["question"], *(f"{LETTERS[i]}. {c}" for i, c in
                                              enumerate(r["choices"])), "Answer:"]),
        lambda r: f"{LETTERS[r['answer']]}. {r['choices'][r['answer']]}",
        hub_name="auxiliary_train"),
}


def _unknown(name: str, known, what: str) -> CompbenchError:
    return CompbenchError(f"unknown {what} dataset '{name}'; known: {', '.join(known)}")


def classification_splits(name: str, num_labels: int | None = None):
    """(train, held-out) `datasets.Dataset`s with `text` and `label` columns, and the class
    count; a label outside the head's `num_labels` classes is an error naming the row."""
    import datasets

    if name not in CLASSIFICATION:
        raise _unknown(name, CLASSIFICATION, "classification")
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


def parse_mix(text: str) -> dict[str, float]:
    """`gsm8k=1.0,commonsense_qa=0.5` -> {name: fraction of its train split}; each fraction in
    (0, 1] and each name a known SFT dataset."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if not sep:
            raise CompbenchError(f"--mix: '{part}' is not NAME=FRACTION (e.g. gsm8k=1.0)")
        if name not in SFT:
            raise _unknown(name, SFT, "SFT")
        try:
            fraction = float(weight)
        except ValueError:
            raise CompbenchError(f"--mix: {name}={weight} is not a number") from None
        if not 0 < fraction <= 1:
            raise CompbenchError(f"--mix: {name}={weight}: a weight is the fraction of that "
                                 "dataset's train split to use, in (0, 1]")
        if name in mix:
            raise CompbenchError(f"--mix: {name} is given twice")
        mix[name] = fraction
    if not mix:
        raise CompbenchError("--mix is empty; give NAME=FRACTION pairs, e.g. gsm8k=1.0,commonsense_qa=0.5")
    return mix


def data_fingerprint(head: str, dataset: str, mix: dict[str, float]) -> dict[str, str]:
    """The sha256 of each local file a run trains and evaluates on (hub datasets by id)."""
    from compbench.core.io import sha256_file
    from compbench.tasks.data import local_files

    if head == "classification":
        spec = CLASSIFICATION[dataset]
        sources = [(spec.path, spec.local_name, [spec.train_split, *filter(None, [spec.eval_split])])]
    else:
        sources = [(SFT[name].path, SFT[name].local_name, [SFT[name].split]) for name in mix]
    found = {}
    for path, local_name, splits in sources:
        files = local_files(local_name, splits) if local_name else None
        if files is None:
            found[path] = "hub"
        else:
            found.update({f"{local_name}/{f.name}": sha256_file(f) for f in files if f.is_file()})
    return found


def _sft_rows(name: str) -> list[dict[str, Any]]:
    spec = SFT[name]
    if spec.local_name is None:
        import datasets

        try:
            rows = datasets.load_dataset(spec.path, spec.hub_name, split=spec.split)
        except Exception as exc:  # the hub client raises many types; all mean "not reachable"
            raise CompbenchError(f"{name} ({spec.path}, {spec.hub_name}) is read from the hub, which "
                                 f"is not reachable here ({type(exc).__name__}); no local copy "
                                 "exists: leave it out of --mix") from None
    else:
        rows = load_splits(spec.path, spec.local_name, [spec.split], spec.hub_name, spec.fields)[spec.split]
    return [{"prompt": spec.prompt(row), "completion": spec.completion(row), "source": name}
            for row in rows]


def mix_sft(mix: dict[str, float], seed: int, held_out_fraction: float, chat: bool):
    """(train, held-out) prompt/completion datasets. As alignment-handbook's `dataset_mixer`:
    each dataset contributes the *first* `fraction` of its train split (no sampling), and the
    concatenation is shuffled with `seed`; then `held_out_fraction` of it (seeded) is held out.
    With `chat`, prompt and completion are chat messages (the tokenizer's template applies)."""
    import datasets

    rows = []
    for name, fraction in mix.items():
        part = _sft_rows(name)
        rows.extend(part[: max(1, int(fraction * len(part)))])
    if chat:
        rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "completion": [{"role": "assistant", "content": r["completion"]}],
                 "source": r["source"]} for r in rows]
    else:
        rows = [{**r, "prompt": r["prompt"] + "\n"} for r in rows]
    table = datasets.Dataset.from_list(rows).shuffle(seed=seed)
    parts = table.train_test_split(test_size=held_out_fraction, seed=seed)
    return parts["train"], parts["test"]
