"""What compbench's task YAMLs hold: dataset, split, metrics, and whether the data is local."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from compbench.tasks import TASKS_DIR
from compbench.tasks.data import data_dir


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval task YAMLs without importing their `!function` hooks."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@dataclass(frozen=True)
class TaskInfo:
    name: str
    dataset: str
    split: str
    metrics: tuple[str, ...]
    local_files: tuple[Path, ...]  # where the data dir would hold this task's rows
    local_rows: int | None  # rows of those files when all are present, else None
    data_dir_set: bool  # False: no data dir configured, the task loads from the hub


def _read(path: Path) -> dict:
    config = yaml.load(path.read_text(), Loader=_TaskLoader)
    if "include" in config:
        config = {**_read(path.parent / config["include"]), **config}
    return config


def task_catalog() -> list[TaskInfo]:
    """Every task YAML in the tasks folder (groups, and templates without a `task` key, skipped)."""
    local = data_dir()
    infos = []
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        config = _read(path)
        if "task" not in config or "group" in config:
            continue
        kwargs = config.get("dataset_kwargs", {})
        dataset = kwargs.get("path", "?") + (f" ({kwargs['name']})" if kwargs.get("name") else "")
        files = tuple((local or Path("<data dir>")) / kwargs.get("local_name", "?") / f"{s}.jsonl"
                      for s in kwargs.get("splits", []))
        rows = None
        if local is not None and files and all(f.is_file() for f in files):
            rows = sum(sum(1 for line in f.open(encoding="utf-8") if line.strip()) for f in files)
        metrics = tuple(m["metric"] for m in config.get("metric_list", []))
        infos.append(TaskInfo(config["task"], dataset, config.get("test_split", "?"), metrics,
                              files, rows, local is not None))
    return infos
