"""The results store: one JSON file per run, written atomically, read back as `RunRecord`s.

Reports also read lm-eval's own results files (`lm_eval --output_path`), so runs made without
compbench can be reported; anything else in a results folder is named and skipped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.records.record import SCHEMA_VERSION, RunRecord, TaskResult, Timing

REPORT_MARK = "compbench_report"  # the key a JSON report carries, so it is not read as a result
SPEED_SCHEMA = "compbench-speed"  # the `schema` of a `compbench speed` run's file


def write_record(path: Path, record: RunRecord) -> None:
    """Write a record atomically (a kill leaves the old file or the new one, never half)."""
    write_json_atomic(path, record.to_dict())


def is_lm_eval_output(data: Any) -> bool:
    """Whether parsed JSON is lm-eval's results file (`--output_path`)."""
    return isinstance(data, dict) and "results" in data and "config" in data and "schema_version" not in data


def _model_args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    pairs = [part.split("=", 1) for part in str(value or "").split(",") if "=" in part]
    return {key.strip(): item.strip() for key, item in pairs}


def record_from_lm_eval(data: dict[str, Any], path: Path) -> RunRecord:
    """A record from lm-eval's results file: the model is `pretrained` (or lm-eval's model name),
    the recipe is `recipe=` from the model args, else the checkpoint's folder name; no sizes."""
    config = data.get("config") or {}
    args = _model_args(config.get("model_args"))
    pretrained = str(args.get("pretrained") or data.get("model_name") or config.get("model") or path.stem)
    recipe = str(args.get("recipe") or Path(pretrained).name)
    preset = pretrained if args.get("recipe") else str(config.get("model") or "lm-eval")
    tasks = {}
    for name, block in data["results"].items():
        counts = (data.get("n-samples") or {}).get(name) or {}
        metadata = ((data.get("configs") or {}).get(name) or {}).get("metadata") or {}
        tasks[name] = TaskResult.from_lm_eval(
            block, (data.get("higher_is_better") or {}).get(name) or {}, metadata,
            version=(data.get("versions") or {}).get(name), n_original=counts.get("original"),
            n_effective=counts.get("effective"))
    return RunRecord(
        status="ok", run_key=f"lm-eval:{path.name}",
        model={"preset": preset, "source": pretrained, "origin": f"lm-eval results file {path.name}"},
        artifact={"recipe": {"string": recipe, "steps": []}},
        settings={"tasks": list(data["results"]), "limit": config.get("limit"),
                  "lm_eval": data.get("lm_eval_version")},
        tasks=tasks, timing=Timing(started_at=float(data.get("date") or 0)))


def read_record(path: Path) -> RunRecord:
    """One results file (compbench's, or lm-eval's own); anything else is an error naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompbenchError(f"cannot read results file {path}: {exc}") from None
    if is_lm_eval_output(data):
        try:
            return dataclasses.replace(record_from_lm_eval(data, path), source=path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CompbenchError(f"{path} is a malformed lm-eval results file ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CompbenchError(f"{path} is not a compbench or lm-eval results file (no schema_version)")
    if not isinstance(data["schema_version"], int) or data["schema_version"] > SCHEMA_VERSION:
        raise CompbenchError(
            f"{path} has schema_version {data['schema_version']}; this compbench reads up to "
            f"{SCHEMA_VERSION}: upgrade compbench"
        )
    try:
        if data["schema_version"] == 1:
            from compbench.records.migrate import migrate_v1

            data = migrate_v1(data)
        return dataclasses.replace(RunRecord.from_dict(data), source=path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompbenchError(f"{path} is a malformed compbench results file ({exc})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_report(path: Path) -> bool:
    """A JSON report or a speed run's file: read by the report, not as a run's results."""
    data = _read_json(path)
    return isinstance(data, dict) and (REPORT_MARK in data or data.get("schema") == SPEED_SCHEMA)


def load_speed_runs(folders: list[Path]) -> list[dict[str, Any]]:
    """The `compbench speed` runs under the folders (recursively, sorted by path)."""
    runs = []
    for folder in folders:
        for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
            data = _read_json(path)
            if isinstance(data, dict) and data.get("schema") == SPEED_SCHEMA and data.get("repetitions"):
                runs.append(data)
    return runs


MODEL_FOLDER_FILES = ("config.json", "adapter_config.json", "trainer_state.json")


def _in_model_folder(path: Path, root: Path) -> bool:
    """Whether a JSON file lies in a checkpoint or adapter folder (a fine-tuning run's output),
    whose JSON files are the model's, not results."""
    folder = path.parent
    while folder != root and root in folder.parents:
        if any((folder / name).is_file() for name in MODEL_FOLDER_FILES):
            return True
        folder = folder.parent
    return False


def load_results(folders: list[Path] | Path, warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """Every results file under the folders (recursively, sorted by path; not inside hidden,
    checkpoint or adapter folders). A file that cannot be read is named through `warn` and
    skipped; without `warn` it is an error."""
    folders = [folders] if isinstance(folders, Path) else folders
    records = []
    for folder in folders:
        if not folder.is_dir():
            raise CompbenchError(f"results dir {folder} does not exist")
        for path in sorted(folder.rglob("*.json")):
            if (any(part.startswith(".") for part in path.relative_to(folder).parts)
                    or _in_model_folder(path, folder) or _is_report(path)):
                continue
            try:
                records.append(read_record(path))
            except CompbenchError as exc:
                if warn is None:
                    raise
                warn(f"skipping {exc}")
    if not records:
        raise CompbenchError(f"no results files (*.json) in {', '.join(map(str, folders))}; run "
                             "`compbench eval` or `compbench sweep` first")
    return records
