"""The results store: one JSON file per run, written atomically, read back as `RunRecord`s."""

from __future__ import annotations

import json
from pathlib import Path

from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.reports.record import SCHEMA_VERSION, RunRecord


def write_record(path: Path, record: RunRecord) -> None:
    """Write a record atomically (a kill leaves the old file or the new one, never half)."""
    write_json_atomic(path, record.to_dict())


def read_record(path: Path) -> RunRecord:
    """One results file; a file that is not a compbench result is an error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompbenchError(f"cannot read results file {path}: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CompbenchError(f"{path} is not a compbench results file (no schema_version)")
    if not isinstance(data["schema_version"], int) or data["schema_version"] > SCHEMA_VERSION:
        raise CompbenchError(
            f"{path} has schema_version {data['schema_version']}; this compbench reads up to "
            f"{SCHEMA_VERSION}: upgrade compbench"
        )
    try:
        return RunRecord.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompbenchError(f"{path} is a malformed compbench results file ({exc})") from None


def load_results(folder: Path) -> list[RunRecord]:
    """Every compbench results file in `folder` (not recursive), sorted by file name."""
    if not folder.is_dir():
        raise CompbenchError(f"results dir {folder} does not exist")
    records = [read_record(path) for path in sorted(folder.glob("*.json"))]
    if not records:
        raise CompbenchError(f"no results files (*.json) in {folder}; run `compbench eval` first")
    return records
