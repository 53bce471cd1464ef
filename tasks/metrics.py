"""Corpus-level metrics that lm-eval computes at aggregation time over all documents."""

from __future__ import annotations

import math
from collections.abc import Iterable

from sklearn.metrics import f1_score


def _f1(items: Iterable[tuple[int, int]], **options) -> float:
    golds, preds = zip(*items, strict=True)
    return float(f1_score(golds, preds, zero_division=0, **options))


def f1_macro(items: Iterable[tuple[int, int]]) -> float:
    """Macro F1 over (gold, prediction) pairs: the unweighted mean of per-class F1.

    Classes are those seen in gold or prediction; a class never predicted scores 0.
    """
    return _f1(items, average="macro")


def f1_micro(items: Iterable[tuple[int, int]]) -> float:
    """Micro F1 over (gold, prediction) pairs; equals accuracy for single-label classes."""
    return _f1(items, average="micro")


def class_f1(label: int):
    """An aggregation computing the F1 of one class over (gold, prediction) pairs."""

    def aggregate(items: Iterable[tuple[int, int]]) -> float:
        return _f1(items, labels=[label], average="macro")

    aggregate.__name__ = f"f1_class_{label}"
    return aggregate


def mean_of_members(items: Iterable[tuple[float, bool]]) -> float:
    """Mean of the values whose flag is set (a category's, a level's, a subject's): NaN when
    no document of the run is a member."""
    values = [value for value, member in items if member]
    return sum(values) / len(values) if values else math.nan
