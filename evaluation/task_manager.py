"""lm-eval's task manager for compbench: its tasks and the user's task folders, built once per
process for each model and handed down with the plan.

compbench's tasks reach lm-eval through `TaskManager(include_path=…)`, the public hook; the
`pretrained` metadata tells the tasks that tokenize with the evaluated model's tokenizer
(`wikitext2_chunked`) which one that is, as lm-eval's CLI does with `--model_args`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from compbench.errors import CompbenchError


@functools.cache
def task_manager(include_paths: tuple[str, ...] = (), tasks: tuple[str, ...] = (),
                 pretrained: str | None = None):
    """lm-eval's task manager with compbench's tasks and the user's task folders included (a
    user's task of the same name overrides compbench's), for the model named `pretrained`.
    When every one of `tasks` is compbench's or the user's, lm-eval's own ~15,000 task YAMLs
    are left unindexed: that saves 6 to 18 s here. Built once per process and arguments."""
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    folders = [str(TASKS_DIR), *include_paths]
    metadata = {"pretrained": pretrained} if pretrained else None
    if tasks:
        local = TaskManager(include_path=folders, include_defaults=False, metadata=metadata)
        if all(task in local.task_index for task in tasks):
            return local
    return TaskManager(include_path=folders, metadata=metadata)


def check_include_paths(include_paths: tuple[str, ...]) -> tuple[str, ...]:
    """The user's task folders, absolute; a missing one, or one holding a YAML file that does
    not read as a task, is an error naming it."""
    from compbench.tasks.catalog import check_task_folder

    resolved = []
    for path in include_paths:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise CompbenchError(f"task folder {path} (--include-path) does not exist; it should "
                                 "hold lm-eval task YAML files")
        check_task_folder(folder)
        resolved.append(str(folder.resolve()))
    return tuple(resolved)


def unknown_tasks_message(unknown: list[str]) -> str:
    """The one line for task names no index holds, with compbench's own task names."""
    from compbench.tasks import TASKS_DIR

    ours = sorted(p.stem for p in TASKS_DIR.glob("[!_]*.yaml"))
    return (f"unknown task(s) {', '.join(unknown)}; compbench tasks: {', '.join(ours)} (any lm-eval "
            "task name, or one of yours with --include-path, also works)")


def check_tasks(manager, tasks: tuple[str, ...]) -> None:
    """Every task is in the manager's index; else one line naming those that are not."""
    if not tasks:
        raise CompbenchError("no tasks given; e.g. --tasks wikitext2_ppl")
    unknown = [t for t in tasks if t not in manager.task_index]
    if unknown:
        raise CompbenchError(unknown_tasks_message(unknown))
