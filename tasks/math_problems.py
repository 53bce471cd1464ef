"""Hooks for the MATH tasks (`!function math_problems.…`): the local MATH rows as lm-eval's
`minerva_math` reads them, scored by its own answer extraction, normalization and math-verify
check, with each problem's subject and level kept so results break down by both."""

from __future__ import annotations

import re
from collections import Counter

from lm_eval.tasks.minerva_math import utils as minerva  # lm-eval[math]: sympy, math-verify, antlr4

from compbench.tasks.data import load_splits

SUBJECTS = {"algebra": "Algebra", "counting_and_prob": "Counting & Probability", "geometry": "Geometry",
            "intermediate_algebra": "Intermediate Algebra", "num_theory": "Number Theory",
            "prealgebra": "Prealgebra", "precalc": "Precalculus"}
LEVELS = (1, 2, 3, 4, 5)
_LEVEL = re.compile(r"^Level ([1-5])$")

__all__ = ["SUBJECTS", "LEVELS", "load_math", "doc_to_text", "fewshot_samples", "results",
           "results_by_subject"]

doc_to_text = minerva.doc_to_text
fewshot_samples = minerva.list_fewshot_samples


def _level(value) -> int:
    """MATH's level as 1-5 ("Level 3" in the original files, 3 in MATH-500); 0 for "Level ?"."""
    if isinstance(value, int):
        return value
    match = _LEVEL.match(str(value))
    return int(match.group(1)) if match else 0


def _standard(row: dict) -> dict:
    """One problem in minerva_math's shape (answer: the last \\boxed{} of the solution,
    normalized), with `subject` and an int `level`."""
    boxed = minerva.last_boxed_only_string(row["solution"])
    answer = minerva.normalize_final_answer(minerva.remove_boxed(boxed))
    return {"problem": row["problem"], "solution": row["solution"], "answer": answer,
            "subject": row.get("type") or row.get("subject"), "level": _level(row["level"])}


def load_math(path: str, local_name: str, splits: list[str], name: str | None = None,
              fields: dict[str, str] | None = None, gold: dict | None = None, subject: str | None = None,
              split_names: dict[str, str] | None = None, per_subject: int | None = None, **_metadata):
    """`custom_dataset` hook: the MATH splits (local copy, else the hub), in minerva_math's
    shape; `subject` (a key of SUBJECTS) keeps that subject's problems only; `per_subject` keeps
    the first that many of each subject (a subset stratified by subject, in file order);
    `split_names` renames local splits to the hub's (MATH-500's local `test500` is the hub's
    `test`)."""
    import datasets

    loaded = load_splits(path, local_name, splits, name=name, fields=fields, gold=gold)
    problems = {}
    for split, rows in loaded.items():
        rows = rows.map(_standard, remove_columns=rows.column_names)
        if subject is not None:
            rows = rows.filter(lambda row: row["subject"] == SUBJECTS[subject])
        if per_subject is not None:
            taken: Counter[str] = Counter()
            keep = []
            for index, name in enumerate(rows["subject"]):
                if taken[name] < per_subject:
                    taken[name] += 1
                    keep.append(index)
            rows = rows.select(keep)
        problems[(split_names or {}).get(split, split)] = rows
    return datasets.DatasetDict(problems)


CHECKS = ("exact_match", "math_verify")


def results(doc: dict, generations: list[str]) -> dict:
    """minerva_math's exact_match and math_verify, and each per level as (value, member) pairs
    for `metrics.mean_of_members`. exact_match reads only Minerva's "Final Answer: The final
    answer is …" sentence; math_verify also reads a chat model's own `\\boxed{}`."""
    scores = minerva.process_results(doc, generations)
    by_level = {f"{check}_level_{level}": (scores[check], doc["level"] == level)
                for check in CHECKS for level in LEVELS}
    return {**scores, **by_level}


def results_by_subject(doc: dict, generations: list[str]) -> dict:
    """`results`, and each check per subject (MATH-500 mixes the seven)."""
    scores = results(doc, generations)
    by_subject = {f"{check}_{key}": (scores[check], doc["subject"] == subject)
                  for check in CHECKS for key, subject in SUBJECTS.items()}
    return {**scores, **by_subject}
