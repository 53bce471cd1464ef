"""Dataset resolution, in one place: local JSONL copies under the data dir, else the real hub id.

The data dir (`--data-dir` or `$COMPBENCH_DATA_DIR`) holds `<dataset>/<split>.jsonl`, the layout
of `../shared/data`. Missing files and malformed lines are reported with file and line number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError

DATA_DIR_ENV = "COMPBENCH_DATA_DIR"


def _checked(path: Path) -> Path:
    if not path.is_dir():
        raise CompbenchError(
            f"data dir {path} does not exist (from --data-dir / ${DATA_DIR_ENV}); point it at a "
            "folder laid out as <dataset>/<split>.jsonl, e.g. ../shared/data"
        )
    return path


def data_dir() -> Path | None:
    """The configured local data dir, or None to load from the hub. A set but absent dir is an error."""
    value = os.environ.get(DATA_DIR_ENV)
    return _checked(Path(value).expanduser()) if value else None


def set_data_dir(path: str | os.PathLike) -> None:
    """Point task loading at a local data dir (an env var, so lm-eval's task loading sees it)."""
    os.environ[DATA_DIR_ENV] = str(_checked(Path(path).expanduser().resolve()))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each non-blank line must be a JSON object."""
    if not path.is_file():
        raise CompbenchError(
            f"dataset file {path} not found; set --data-dir / ${DATA_DIR_ENV} to a folder holding "
            "<dataset>/<split>.jsonl"
        )
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CompbenchError(f"{path}:{number}: malformed JSON line ({exc.msg})") from None
            if not isinstance(row, dict):
                raise CompbenchError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise CompbenchError(f"{path} holds no rows")
    return rows


def load_splits(path: str, local_name: str, splits: list[str], name: str | None = None,
                required_fields: list[str] | None = None):
    """A `datasets.DatasetDict` of the given splits: local JSONL if a data dir is set, else the hub."""
    import datasets

    local = data_dir()
    if local is None:
        try:
            return datasets.load_dataset(path, name)
        except Exception as exc:  # the hub client raises many types; all mean "not reachable"
            raise CompbenchError(
                f"could not load {path} ({name}) from the hub: {exc}. Offline, set --data-dir / "
                f"${DATA_DIR_ENV} to a folder holding {local_name}/<split>.jsonl"
            ) from None
    result = {}
    for split in splits:
        file = local / local_name / f"{split}.jsonl"
        rows = read_jsonl(file)
        for field in required_fields or []:
            for number, row in enumerate(rows, 1):
                if field not in row:
                    raise CompbenchError(f"{file}: row {number} has no field '{field}'")
        result[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(result)
