"""The results store: one JSON file per run, written atomically, read back for reports."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError

SCHEMA_VERSION = 1


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside `path`, fsync it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path) -> dict[str, Any]:
    """One results file; a file that is not a compbench result is an error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompbenchError(f"cannot read results file {path}: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CompbenchError(f"{path} is not a compbench results file (no schema_version)")
    if data["schema_version"] > SCHEMA_VERSION:
        raise CompbenchError(
            f"{path} has schema_version {data['schema_version']}; this compbench reads up to "
            f"{SCHEMA_VERSION}: upgrade compbench"
        )
    return data


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every compbench results file in `folder` (not recursive), sorted by file name."""
    if not folder.is_dir():
        raise CompbenchError(f"results dir {folder} does not exist")
    results = []
    for path in sorted(folder.glob("*.json")):
        data = read_result(path)
        data["_path"] = str(path)
        results.append(data)
    if not results:
        raise CompbenchError(f"no results files (*.json) in {folder}; run `compbench eval` first")
    return results
