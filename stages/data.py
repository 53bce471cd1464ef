"""Training data for causal-LM SFT: a weighted mix of prompt/completion pairs (the labelled
texts of a classification head are `tasks/classification.py`'s, shared with classifier scoring).

Rows come from the same local copies the tasks read (`<data dir>/<dataset>/<split>.jsonl`,
checked row by row), else from the hub.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compbench.errors import CompbenchError
from compbench.tasks.classification import CLASSIFICATION, choices_text, csqa_label, unknown_dataset
from compbench.tasks.data import load_splits

LETTERS = "ABCDEFGHIJ"


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
    # MATH (all 7 subjects): the problem, then its worked solution ending in \boxed{answer}
    "math": SFTData("hendrycks/competition_math", "math", "train", {"problem": "str", "solution": "str"},
                    lambda r: r["problem"], lambda r: r["solution"]),
    "commonsense_qa": SFTData(
        "tau/commonsense_qa", "commonsense_qa", "train",
        {"question": "str", "choices": "dict", "answerKey": "str"},
        lambda r: f"{r['question']}\n{choices_text(r)}\nAnswer:",
        lambda r: f"{r['answerKey']}. {r['choices']['text'][csqa_label(r)]}"),
    "mmlu_aux": SFTData(
        "cais/mmlu", None, "train", {"question": "str", "choices": "list", "answer": "int"},
        lambda r: "\n".join([r["question"], *(f"{LETTERS[i]}. {c}" for i, c in
                                              enumerate(r["choices"])), "Answer:"]),
        lambda r: f"{LETTERS[r['answer']]}. {r['choices'][r['answer']]}",
        hub_name="auxiliary_train"),
}


def parse_mix(text: str) -> dict[str, float]:
    """`gsm8k=1.0,commonsense_qa=0.5` -> {name: fraction of its train split}; each fraction in
    (0, 1] and each name a known SFT dataset."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if not sep:
            raise CompbenchError(f"--mix: '{part}' is not NAME=FRACTION (e.g. gsm8k=1.0)")
        if name not in SFT:
            raise unknown_dataset(name, SFT, "SFT")
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
