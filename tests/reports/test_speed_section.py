"""`compbench report` on a folder that holds a speed run beside results files: the speed run is
not taken for a malformed results file, and the report ends with its table and plot, whose
numbers are the run's medians, ratios and limits."""

import shutil
from pathlib import Path

from compbench.cli.main import main
from compbench.core.io import write_json_atomic
from compbench.records.index import SPEED_SCHEMA, load_results, load_speed_runs
from compbench.reports.speed import render, speed_rows

V1 = Path(__file__).parent.parent / "records" / "fixtures" / "v1"


def _repetition(subject: str, repetition: int, decode: float) -> dict:
    return {"subject": subject, "repetition": repetition, "decode_tokens_per_s": decode,
            "time_to_first_token_s": {"8": 0.1}, "prefill_tokens_per_s": 80.0,
            "batch_tokens_per_s": None if subject.startswith("llama") else 2 * decode,
            "working_memory_mb": 10.0}


RUN = {
    "schema": SPEED_SCHEMA, "version": 1, "model": "smollm2-135m", "llama_cpp": None,
    "settings": {"new_tokens": 4, "prompt_lengths": [8], "batch_rows": 2, "repetitions": 3, "threads": 2},
    "read_bandwidth_gb_per_s": 100 * 2**30 / 1e9,  # 100 GiB/s
    "subjects": {
        "fp32": {"kind": "compbench", "kernels": {"dense float32": 211}, "bytes_read_per_token": 400 * 2**20,
                 "model_rss_mb": 500.0},
        "int4": {"kind": "compbench", "kernels": {"int4 packed": 210, "dense bfloat16": 1},
                 "bytes_read_per_token": 100 * 2**20, "model_rss_mb": 150.0},
        "llama.cpp Q4_0": {"kind": "llama.cpp", "kernels": {"llama.cpp": 1},
                           "bytes_read_per_token": 80 * 2**20, "model_rss_mb": 90.0}},
    "repetitions": [_repetition(s, k, d) for k in range(3) for s, d in
                    (("fp32", 20.0 + k), ("int4", 50.0 + 2 * k), ("llama.cpp Q4_0", 200.0))],
}


def test_the_speed_table_holds_medians_ratios_and_limits():
    header, rows = speed_rows(RUN)
    table = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert table["fp32"]["decode tok/s"] == "21.0 [20.0-22.0]"
    assert table["int4"]["x first"] == "2.48x"  # 52 / 21
    assert table["int4"]["limit tok/s"] == "1024"  # 100 GiB/s over 100 MiB
    assert table["int4"]["% of limit"] == "5%"
    assert table["llama.cpp Q4_0"]["batch-2 tok/s"] == "n/a"
    assert "compbench's fastest decoding (int4, 52.0 tok/s) is 0.26x llama.cpp Q4_0's (200.0 tok/s)" \
        in render(RUN)


def test_report_ends_with_the_speed_run_and_does_not_read_it_as_results(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(V1, results)
    write_json_atomic(results / "speed" / "smollm2-135m.json", RUN)
    assert len(load_results(results)) == len(list(V1.glob("*.json")))  # no error: it is skipped
    assert load_speed_runs([results]) == [RUN]
    assert main(["report", str(results)]) == 0
    captured = capsys.readouterr()
    assert "skipping" not in captured.err
    text = (results / "report.md").read_text()
    assert "## Speed: smollm2-135m" in text and "![speed](speed_smollm2_135m.png)" in text
    assert (results / "speed_smollm2_135m.png").stat().st_size > 0
