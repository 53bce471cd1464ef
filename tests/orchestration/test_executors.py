"""The Ray executor on a local Ray instance, with jobs cheaper than a run: every outcome comes
back as the local executor reports it (a value, bad input, a crash, a worker that died), each
task with the driver's compbench settings and its declared CPU share. The same sweep run
through Ray and through local processes is compared in test_sweep.py (slow tier)."""

import os

import pytest

from compbench.orchestration.executors import RayExecutor


@pytest.mark.heavy
def test_ray_tasks_return_every_kind_of_outcome(monkeypatch):
    pytest.importorskip("ray")
    import torch

    from compbench.compressors import parse_recipe

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("COMPBENCH_PROBE", "from the driver")
    jobs = [("env", os.getenv, ("COMPBENCH_PROBE",)),
            ("threads", torch.get_num_threads, ()),
            ("bad input", parse_recipe, ("wandaa:0.5",)),
            ("crash", int, ("x",)),
            ("worker died", os._exit, (3,))]
    outcomes = dict(RayExecutor(cpus=1).run(jobs))
    assert set(outcomes) == {key for key, *_ in jobs}
    assert (outcomes["env"].status, outcomes["env"].value) == ("ok", "from the driver")
    assert (outcomes["threads"].status, outcomes["threads"].value) == ("ok", 1)
    assert outcomes["bad input"].status == "bad_input"
    assert "unknown compression method 'wandaa'" in outcomes["bad input"].error
    assert outcomes["crash"].status == "crashed" and outcomes["crash"].error.startswith("ValueError")
    assert "Traceback" in outcomes["crash"].traceback
    assert outcomes["worker died"].status == "crashed"
    assert outcomes["worker died"].error.startswith("the Ray task failed")
