"""Executors: where a sweep's runs execute. `run_sweep` hands an executor `(run key, function,
args)` jobs and writes each outcome as it arrives; an executor only decides where and when the
function runs. `LocalExecutor` (the default) runs each job in a freshly spawned process, one at
a time; a Ray or multi-job executor implements the same `run`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Job = tuple[str, Callable[..., Any], tuple]  # (run key, module-level function, its arguments)


@dataclass(frozen=True)
class Outcome:
    """How one job ended: its value, or a bad-input message, or a crash with its traceback."""

    status: Literal["ok", "bad_input", "crashed"]
    value: Any = None
    error: str | None = None
    traceback: str | None = None


class Executor(Protocol):
    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        """Run the jobs; yield (run key, outcome) for each as it finishes."""
        ...


def call_safely(function: Callable[..., Any], *args: Any) -> Outcome:
    """Call `function(*args)`; the outcome as plain data (not every library's exception object
    survives pickling back from a worker)."""
    from compbench.errors import CompbenchError

    try:
        return Outcome("ok", function(*args))
    except CompbenchError as exc:
        return Outcome("bad_input", error=str(exc))
    except Exception as exc:
        return Outcome("crashed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())


def _settings_to_inherit() -> tuple[dict[str, int], list]:
    """This process's logger levels and (builtin-category) warning filters: a spawned worker
    starts without them, and would print what the CLI silenced."""
    import logging
    import warnings

    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level}
    levels[""] = logging.root.level
    filters = [f for f in warnings.filters if f[2].__module__ == "builtins"]
    return levels, filters


def _die_with_parent(parent_pid: int) -> None:
    """Exit this worker as soon as its parent is gone, even when the parent was SIGKILLed and
    could not stop it: a daemon thread polls the parent pid (works on Linux and macOS alike),
    so no run goes on computing as an orphan."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="compbench-parent-watch", daemon=True).start()


def _start_worker(parent_pid: int, levels: dict[str, int], filters: list) -> None:
    """A spawned worker's first act: die with its parent, and keep the parent's log levels and
    warning filters."""
    import logging
    import warnings

    _die_with_parent(parent_pid)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    warnings.filters[:] = filters


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Outcome:
    """Call a module-level `function(*args)` in a newly spawned process: a run's peak memory and
    speed are then its own (not inflated by the runs before it), and a run killed by the OS
    does not end the sweep."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    spawn = multiprocessing.get_context("spawn")  # fork would inherit this process's memory
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_start_worker,
                             initargs=(os.getpid(), *_settings_to_inherit())) as pool:
        try:
            return pool.submit(call_safely, function, *args).result()
        except BrokenProcessPool:
            return Outcome("crashed", error="the run's process died without a result (killed by "
                           "the OS, e.g. out of memory)")


class LocalExecutor:
    """Each job in its own freshly spawned process, one after another, on this machine."""

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        for key, function, args in jobs:
            yield key, in_fresh_process(function, *args)
