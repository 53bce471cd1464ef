"""Python hooks (`!function utils.…`) for the task YAMLs in this folder."""

from __future__ import annotations

import re

from lm_eval.tasks.wikitext.preprocess_wikitext import process_results as wikitext_results
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

from compbench.tasks.data import load_splits

_PAGE_TITLE = re.compile(r"^ = [^=].* = \n$")

__all__ = [
    "load_dataset", "passage_prompt", "wikitext_detokenizer", "wikitext_pages",
    "wikitext_results",
]


def load_dataset(path: str, local_name: str, splits: list[str], name: str | None = None,
                 fields: dict[str, str] | None = None, gold: dict | None = None, **_metadata):
    """`custom_dataset` hook: lm-eval passes the task's metadata and `dataset_kwargs` here."""
    return load_splits(path, local_name, splits, name=name, fields=fields, gold=gold)


def wikitext_pages(dataset):
    """Join wikitext's line rows into whole articles (a page starts at a ` = Title = ` row),
    as EleutherAI/wikitext_document_level does; blank rows become blank lines."""
    import datasets

    pages: list[str] = []
    current: list[str] = []
    for text in dataset["text"]:
        if _PAGE_TITLE.match(text) and current:
            pages.append("".join(current))
            current = []
        current.append(text or "\n")
    if current:
        pages.append("".join(current))
    pages = [p for p in pages if p.strip()]
    return datasets.Dataset.from_dict({"page": pages})


def passage_prompt(passage: str, question: str, options: list[str]) -> str:
    """lm-eval's LogiQA prompt: passage, question, lettered choices, then "Answer:"."""
    lines = [f"Passage: {passage}", f"Question: {question}", "Choices:"]
    lines += [f"{letter}. {option}" for letter, option in zip("ABCDEFGH", options, strict=False)]
    return "\n".join(lines) + "\nAnswer:"


def logiqa_text(doc) -> str:
    return passage_prompt(doc["context"], doc["query"], doc["options"])


def reclor_text(doc) -> str:
    return passage_prompt(doc["context"], doc["question"], doc["answers"])


def cosmos_choices(doc) -> list[str]:
    return [doc[f"answer{i}"] for i in range(4)]


def cosmos_text(doc) -> str:
    return passage_prompt(doc["context"], doc["question"], cosmos_choices(doc))
