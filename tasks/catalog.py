"""What task YAMLs hold: dataset, split, metrics, headline metric, version, and the local data
files a run reads (with their hashes, for the run key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from compbench.core.io import data_dir, sha256_file
from compbench.errors import CompbenchError
from compbench.tasks import TASKS_DIR
from compbench.tasks.data import read_checked


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


def check_task_folder(folder: Path) -> None:
    """Every task YAML under a user's task folder reads as a mapping (lm-eval skips one that
    does not without a word, and the task then reads as unknown): one line naming the file."""
    for path in sorted(folder.rglob("*.yaml")):
        if "__pycache__" in path.parts:
            continue
        try:
            config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)
        except (OSError, UnicodeDecodeError) as exc:
            raise CompbenchError(f"task file {path} is unreadable ({exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise CompbenchError(f"task file {path}{where} is not valid YAML "
                                 f"({getattr(exc, 'problem', None) or exc}); fix it or move it out of "
                                 "the --include-path folder") from None
        if not isinstance(config, dict):
            raise CompbenchError(f"task file {path} holds a {type(config).__name__}, not an lm-eval task "
                                 "(a mapping with task: NAME); fix it or move it out of the folder")


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


def _group_members(config: dict) -> list[str] | None:
    """The task names of a group YAML's `task` list (entries are names or inline task configs);
    None when the YAML is not a group."""
    if "group" not in config or not isinstance(config.get("task"), list):
        return None
    names = [entry if isinstance(entry, str) else entry.get("task") for entry in config["task"]]
    return [name for name in names if name]


def task_metadata(name: str) -> dict:
    """The `metadata` block of one of compbench's own task YAMLs ({} for other tasks)."""
    path = TASKS_DIR / f"{name}.yaml"
    return dict(_read(path).get("metadata") or {}) if path.is_file() else {}


def _leaf_tasks(name: str, index: dict) -> list[tuple[str, Path | None, dict | None]]:
    """Task `name` as (name, YAML path, config with its includes), or each member of group
    `name` so (recursively); path and config are None for a task without a YAML (lm-eval
    defines it in Python). `index` is lm-eval's task index (`TaskManager.task_index`)."""
    path = getattr(index.get(name), "yaml_path", None)
    if not isinstance(path, (str, Path)):
        return [(name, None, None)]
    config = _read(Path(path))
    members = _group_members(config)
    if members is None:
        return [(name, Path(path), config)]
    return [leaf for member in members for leaf in _leaf_tasks(member, index)]


def is_generative(name: str, index: dict) -> bool:
    """Whether task `name` (or a member of group `name`) generates text (`output_type:
    generate_until`)."""
    return any(config and config.get("output_type") == "generate_until"
               for _, _, config in _leaf_tasks(name, index))


def task_fingerprint(name: str, index: dict) -> dict:
    """What about task `name` (each member of a group) can change a number: its YAML
    `metadata.version`, and the sha256 of each local data file it reads (the hub dataset id
    where it reads none)."""
    return {leaf: _fingerprint(path, config) for leaf, path, config in _leaf_tasks(name, index)}


def _fingerprint(path: Path | None, config: dict | None) -> dict:
    if config is None:
        return {"version": None}
    kwargs = config.get("dataset_kwargs") or {}
    local = data_dir()
    if local is not None and kwargs.get("local_name"):
        files = [local / kwargs["local_name"] / f"{split}.jsonl" for split in kwargs.get("splits", [])]
        data = {f"{kwargs['local_name']}/{f.name}": sha256_file(f) if f.is_file() else None
                for f in files}
    else:
        data = {"hub": config.get("dataset_path") or kwargs.get("path"),
                "name": config.get("dataset_name") or kwargs.get("name")}
    fingerprint = {"version": (config.get("metadata") or {}).get("version"), "data": data}
    if _users_task(path):
        fingerprint["yaml_sha256"] = sha256_file(path)
    return fingerprint


def _users_task(path: Path) -> bool:
    """Whether a task YAML is the user's own (not compbench's, versioned by `metadata.version`,
    nor lm-eval's, versioned with lm-eval): its content is then part of the run key."""
    import lm_eval

    path = path.resolve()
    return not any(path.is_relative_to(Path(root).resolve())
                   for root in (TASKS_DIR, Path(lm_eval.__file__).parent))


def check_generation_kwargs(name: str, index: dict) -> None:
    """A generative task's `generation_kwargs` (or each group member's) as lm-eval would use
    them: `max_gen_toks` a whole number >= 1 (0 or less generates nothing, and every answer
    would score as wrong), `until` one stop string or a non-empty list of non-empty ones (an
    empty list stops only at the token limit or the end-of-sequence token)."""
    for leaf, path, config in _leaf_tasks(name, index):
        if not config or config.get("output_type") != "generate_until":
            continue
        problem = generation_kwargs_problem(config.get("generation_kwargs") or {})
        if problem:
            raise CompbenchError(f"task {leaf} ({path}): generation_kwargs: {problem}")


def generation_kwargs_problem(kwargs: dict) -> str | None:
    """What is wrong with a task's (or `--gen-kwargs`') `max_gen_toks` and `until`, if anything."""
    tokens = kwargs.get("max_gen_toks")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        return f"max_gen_toks must be a whole number >= 1 (new tokens per answer), got {tokens!r}"
    if "until" in kwargs:
        until = kwargs["until"]
        stops = [until] if isinstance(until, str) else until
        if not isinstance(stops, list) or not stops or not all(isinstance(s, str) and s for s in stops):
            return f"until must be a stop string or a non-empty list of non-empty stop strings, got {until!r}"
    return None


_CHECKED: set[str] = set()  # sha256 of the files already checked in this process


def check_local_data(name: str, index: dict) -> None:
    """Check every row of the local files task `name` (or a group's members) reads, before any
    run starts: field types and gold labels, as the task's YAML states them."""
    if data_dir() is None:
        return
    for _, _, config in _leaf_tasks(name, index):
        kwargs = (config or {}).get("dataset_kwargs") or {}
        for split in kwargs.get("splits", []) if kwargs.get("local_name") else []:
            file = data_dir() / kwargs["local_name"] / f"{split}.jsonl"
            digest = sha256_file(file) if file.is_file() else None
            if digest not in _CHECKED:
                read_checked(file, kwargs.get("fields"), kwargs.get("gold"))
                _CHECKED.add(digest)
