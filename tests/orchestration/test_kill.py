"""Kill safety: a SIGKILLed `compbench eval` leaves no process of its run computing."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest


@pytest.mark.heavy
def test_sigkill_of_compbench_eval_leaves_no_process_of_the_run(tmp_path, checkpoint, data_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "compbench.cli.main", "eval", "--recipe", "fp32", "--tasks",
         "wikitext2_ppl", "--limit", "2", "--device", "cpu", "--output-dir", str(tmp_path)],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []
    deadline = time.time() + 300
    while time.time() < deadline and not workers:
        workers = parent.children(recursive=True)
        time.sleep(0.2)
    assert workers, "the run's worker process never started"
    time.sleep(3)  # the worker is loading the model by now
    workers = parent.children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    assert not list(tmp_path.glob("*.json"))  # nothing half-written
