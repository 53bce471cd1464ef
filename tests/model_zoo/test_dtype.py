"""`--dtype auto`: bfloat16 where the device computes in it natively (this machine's CPU flags
are the independent check), float32 elsewhere; a bf16 run's perplexity stays near fp32's."""

from pathlib import Path

import pytest
import torch

from compbench.cli.main import main
from compbench.errors import CompbenchError
from compbench.model_zoo.loading import resolve_dtype
from compbench.model_zoo.presets import get_preset
from compbench.records.index import load_results


def _cpu_has_bf16() -> bool:
    flags = Path("/proc/cpuinfo").read_text()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_auto_follows_the_cpus_bf16_support(monkeypatch):
    preset = get_preset("smollm2-135m")
    expected = "bfloat16" if _cpu_has_bf16() else "float32"
    assert resolve_dtype("auto", preset, "cpu") == expected
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_dtype("auto", preset, "cpu") == "float32"
    assert resolve_dtype(None, preset, "cpu") == "float32"  # the preset's
    assert resolve_dtype("float16", preset, "cpu") == "float16"
    with pytest.raises(CompbenchError, match="unknown dtype 'bf16'; use float32, bfloat16, float16, auto"):
        resolve_dtype("bf16", preset, "cpu")


@pytest.mark.heavy
@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_a_bf16_run_records_its_dtype_and_keeps_perplexity_within_half_a_percent(tmp_path, data_dir):
    # a recipe that keeps the load dtype (the cast recipes fp32/bf16 set their own)
    argv = ["eval", "--recipe", "magnitude:0.2", "--tasks", "wikitext2_chunked", "--limit", "1",
            "--device", "cpu"]
    assert main([*argv, "--dtype", "auto", "--output-dir", str(tmp_path / "auto")]) == 0
    assert main([*argv, "--output-dir", str(tmp_path / "fp32")]) == 0
    (auto,), (fp32,) = load_results(tmp_path / "auto"), load_results(tmp_path / "fp32")
    assert auto.model["dtype"] == "bfloat16" and auto.artifact["dtype_auto"] is True
    assert fp32.model["dtype"] == "float32" and auto.run_key != fp32.run_key
    ppl = {r.model["dtype"]: r.metric("wikitext2_chunked", "perplexity,none").value
           for r in (auto, fp32)}
    assert abs(ppl["bfloat16"] - ppl["float32"]) / ppl["float32"] < 0.005, ppl
