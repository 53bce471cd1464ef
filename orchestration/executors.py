"""Executors: where a sweep's runs execute. `run_sweep` hands an executor `(run key, function,
args)` jobs and writes each outcome as it arrives; an executor only decides where and when the
function runs. `LocalExecutor` runs each job in a freshly spawned process, `jobs` at a time
(each with its share of the CPU threads); `RayExecutor` runs each as a Ray task on a cluster.
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


def _use_threads(threads: int | None) -> None:
    """Give this process's torch (and its OpenMP pool) `threads` CPU threads; None: torch's default."""
    import os

    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def _start_worker(parent_pid: int, levels: dict[str, int], filters: list, threads: int | None) -> None:
    """A spawned worker's first act: die with its parent, keep the parent's log levels and
    warning filters, and use its share of the CPU threads."""
    import logging
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends us
    _die_with_parent(parent_pid)
    _use_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    warnings.filters[:] = filters


def in_fresh_process(function: Callable[..., Any], *args: Any, threads: int | None = None) -> Outcome:
    """Call a module-level `function(*args)` in a newly spawned process (with `threads` CPU
    threads): a run's peak memory and speed are then its own (not inflated by the runs before
    it), and a run killed by the OS does not end the sweep."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    spawn = multiprocessing.get_context("spawn")  # fork would inherit this process's memory
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_start_worker,
                             initargs=(os.getpid(), *_settings_to_inherit(), threads)) as pool:
        try:
            return pool.submit(call_safely, function, *args).result()
        except BrokenProcessPool:
            return Outcome("crashed", error="the run's process died without a result (killed by "
                           "the OS, e.g. out of memory)")


class LocalExecutor:
    """Each job in its own freshly spawned process on this machine, `jobs` at a time; with
    several, each process gets an equal share of the CPU threads (2 jobs on 16 cores: 8 each),
    so concurrent runs do not oversubscribe the cores."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def threads_per_job(self) -> int | None:
        import os

        return None if self.jobs == 1 else max(1, (os.cpu_count() or 1) // self.jobs)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        jobs, threads = iter(jobs), self.threads_per_job()
        with ThreadPoolExecutor(self.jobs) as pool:
            running = {}

            def start_next() -> None:  # pulled one at a time: a job starts when a slot frees
                job = next(jobs, None)
                if job is not None:
                    key, function, args = job
                    running[pool.submit(in_fresh_process, function, *args, threads=threads)] = key

            for _ in range(self.jobs):
                start_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield running.pop(future), future.result()  # written before the next starts
                    start_next()


def _ray_call(function: Callable[..., Any], args: tuple, threads: int,
              environment: dict[str, str]) -> Outcome:
    """A Ray task's body: the driver's compbench settings, its CPU share, then the job."""
    import os

    os.environ.update(environment)
    _use_threads(threads)
    return call_safely(function, *args)


RAY_CONNECT_TIMEOUT_S = 10


def check_reachable(address: str | None) -> None:
    """A Ray cluster address answers within RAY_CONNECT_TIMEOUT_S seconds (Ray itself retries an
    unreachable one for minutes); None, "auto" and "local" start or find a local instance."""
    import socket

    from compbench.errors import CompbenchError

    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise CompbenchError(f"--ray-address {address}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise CompbenchError(f"--ray-address {address}: no Ray cluster answers there within "
                             f"{RAY_CONNECT_TIMEOUT_S} s ({exc.strerror or exc}); start one with `ray "
                             "start --head`, or leave --ray-address out for a local instance") from None


class RayExecutor:
    """Each job a Ray task declaring the CPUs, GPUs and memory it needs; outcomes come back as
    tasks finish and the driver writes them. Connects to `address` (a running cluster, or
    "auto"), or starts a local Ray instance for the sweep and stops it after."""

    ENV_PREFIXES = ("COMPBENCH_", "HF_", "TOKENIZERS_")

    def __init__(self, address: str | None = None, cpus: int = 1, gpus: float = 0,
                 memory_gb: float | None = None):
        self.address, self.cpus, self.gpus, self.memory_gb = address, cpus, gpus, memory_gb

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        import os

        try:
            import ray
        except ImportError:
            from compbench.errors import CompbenchError

            raise CompbenchError("--executor ray needs Ray: pip install 'compbench[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            check_reachable(self.address)
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        environment = {k: v for k, v in os.environ.items() if k.startswith(self.ENV_PREFIXES)}
        task = ray.remote(_ray_call).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0,
            memory=int(self.memory_gb * 2**30) if self.memory_gb else None)
        try:
            pending = {task.remote(function, args, self.cpus, environment): key
                       for key, function, args in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                key = pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    outcome = Outcome("crashed", error=f"the Ray task failed: {type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}")
                yield key, outcome
        finally:
            if started_here:
                ray.shutdown()
