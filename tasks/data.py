"""Dataset resolution for the task YAMLs: local JSONL copies under the data dir, else the real hub id.

The data dir and JSONL reading live on the ground floor (`compbench.core.io`); this module turns
them into the `datasets.DatasetDict` lm-eval's `custom_dataset` hooks return, after checking each
local row against the task YAML's `dataset_kwargs`: `fields` (name: type) and `gold` (where the
gold label is and what it may be). A label that names no choice would be scored as a wrong answer
without a word, so it is an error with its file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compbench.core.io import DATA_DIR_ENV, data_dir, read_jsonl_lines
from compbench.errors import CompbenchError

TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "number": (int, float),
                                      "list": (list,), "dict": (dict,)}


def local_files(local_name: str, splits: list[str]) -> list[Path] | None:
    """The JSONL files a task reads from the data dir, or None when no data dir is set."""
    root = data_dir()
    return None if root is None else [root / local_name / f"{split}.jsonl" for split in splits]


def _at(row: dict, dotted: str) -> Any:
    """`row["choices"]["label"]` for "choices.label"; None where the path is missing."""
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_row(where: str, row: dict, fields: dict[str, str] | None, gold: dict | None) -> None:
    """One row against the task's `fields` and `gold` spec; `where` is "file:line".

    `gold` is {field, values} (the label is one of these), {field, contains} (the field is text
    holding this marker, e.g. the `\\boxed` of a MATH solution) or {field, choices, index?,
    count?} (the label is one of the row's list at the dotted path `choices`, or with `index:
    true` an index into it; `count`: the exact number of choices the prompt expects)."""
    for name, kind in (fields or {}).items():
        if name not in row:
            raise CompbenchError(f"{where}: no field '{name}'")
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, TYPES[kind]):
            raise CompbenchError(f"{where}: field '{name}' must be {kind}, got "
                                 f"{type(value).__name__} {_shown(value)}")
    if not gold:
        return
    label = row.get(gold["field"])
    if "contains" in gold:
        if not isinstance(label, str) or gold["contains"] not in label:
            raise CompbenchError(f"{where}: field '{gold['field']}' holds no {gold['contains']} (where the "
                                 "task reads the gold answer)")
        return
    if "values" in gold:
        if isinstance(label, bool) or label not in gold["values"]:
            raise CompbenchError(f"{where}: gold label {gold['field']}={_shown(label)} is not one of "
                                 f"{', '.join(map(str, gold['values']))}")
        return
    options = _at(row, gold["choices"])
    count = gold.get("count")
    if not isinstance(options, list) or len(options) < 2 or (count and len(options) != count):
        size = len(options) if isinstance(options, list) else "no"
        raise CompbenchError(f"{where}: {gold['choices']} holds {size} choices; the task needs "
                             f"{count or 'at least 2'}")
    if gold.get("index"):
        valid = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(options)
        allowed = f"an index 0-{len(options) - 1} into {gold['choices']}"
    else:
        valid = label in options
        allowed = f"one of {gold['choices']} ({', '.join(map(str, options))})"
    if not valid:
        raise CompbenchError(f"{where}: gold label {gold['field']}={_shown(label)} is not {allowed}")


def read_checked(file: Path, fields: dict[str, str] | None = None, gold: dict | None = None) -> list[dict]:
    """A local JSONL file's rows, each checked (see `check_row`)."""
    numbered = read_jsonl_lines(file)
    for line, row in numbered:
        check_row(f"{file}:{line}", row, fields, gold)
    return [row for _, row in numbered]


def load_splits(path: str, local_name: str, splits: list[str], name: str | None = None,
                fields: dict[str, str] | None = None, gold: dict | None = None):
    """A `datasets.DatasetDict` of the given splits: local JSONL if a data dir is set (checked
    row by row), else the hub."""
    import datasets

    files = local_files(local_name, splits)
    if files is None:
        try:
            return datasets.load_dataset(path, name)
        except Exception as exc:  # the hub client raises many types; all mean "not reachable"
            raise CompbenchError(
                f"could not load {path} ({name}) from the hub: {exc}. Offline, set --data-dir / "
                f"${DATA_DIR_ENV} to a folder holding {local_name}/<split>.jsonl"
            ) from None
    return datasets.DatasetDict({split: datasets.Dataset.from_list(read_checked(file, fields, gold))
                                 for split, file in zip(splits, files, strict=True)})
