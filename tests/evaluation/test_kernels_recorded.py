"""An evaluation on a packed-kernel recipe runs its model through that kernel, and its results
say so (`model.kernels`)."""

import math

import pytest

from compbench.cli.main import main
from compbench.records.index import load_results


@pytest.mark.heavy
def test_an_int8wo_evaluation_runs_and_records_the_int8_kernel(tmp_path, data_dir):
    argv = ["eval", "--recipe", "int8wo", "--tasks", "wikitext2_chunked", "--limit", "1", "--device", "cpu",
            "--output-dir", str(tmp_path), "--no-store"]
    assert main(argv) == 0
    (record,) = load_results(tmp_path)
    assert record.model["kernels"] == {"int8 packed (aten._weight_int8pack_mm)": 210, "dense bfloat16": 1}
    assert record.model["dtype"] == "bfloat16"
    assert math.isfinite(record.metric("wikitext2_chunked", "perplexity,none").value)
