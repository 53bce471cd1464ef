"""Dataset resolution for the task YAMLs: local JSONL copies under the data dir, else the real hub id.

The data dir and JSONL reading live on the ground floor (`compbench.core.io`); this module turns
them into the `datasets.DatasetDict` lm-eval's `custom_dataset` hooks return.
"""

from __future__ import annotations

from pathlib import Path

from compbench.core.io import DATA_DIR_ENV, data_dir, read_jsonl
from compbench.errors import CompbenchError


def local_files(local_name: str, splits: list[str]) -> list[Path] | None:
    """The JSONL files a task reads from the data dir, or None when no data dir is set."""
    root = data_dir()
    return None if root is None else [root / local_name / f"{split}.jsonl" for split in splits]


def load_splits(path: str, local_name: str, splits: list[str], name: str | None = None,
                required_fields: list[str] | None = None):
    """A `datasets.DatasetDict` of the given splits: local JSONL if a data dir is set, else the hub."""
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
    result = {}
    for split, file in zip(splits, files, strict=True):
        rows = read_jsonl(file)
        for field in required_fields or []:
            for number, row in enumerate(rows, 1):
                if field not in row:
                    raise CompbenchError(f"{file}: row {number} has no field '{field}'")
        result[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(result)
