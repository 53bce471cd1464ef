"""The report holds the measured numbers of the results files; the store writes atomically."""

import json

import pytest

from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.harness.cli import main
from compbench.reports.store import load_results


def test_report_table_holds_the_measured_numbers(sweep, tmp_path, capsys):
    out, runs, _ = sweep
    report = tmp_path / "report.md"
    assert main(["report", str(out), "--output", str(report)]) == 0
    text = report.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert "size MB" in header and "wikitext2 word ppl" in header and "Δ vs fp32" in header
    assert "wikitext2 ppl (GPTQ chunks)" in header
    fp32 = runs["fp32"].metric("wikitext2_ppl", "word_perplexity,none").value
    for recipe, record in runs.items():
        row = next(line for line in text.splitlines() if f"| {recipe} " in line)
        ppl = record.metric("wikitext2_ppl", "word_perplexity,none").value
        assert f"{record.compression.size_mb:.1f}" in row
        assert f"{record.compression.compression_ratio:.2f}x" in row
        assert f"{ppl:.2f}" in row
        assert f"{(ppl - fp32) / fp32:+.1%}" in row


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"schema_version": 1, "status": "ok"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"schema_version": 1, "bad": object.__new__(type)})
    assert json.loads(path.read_text())["status"] == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_foreign_json_is_reported(tmp_path):
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(CompbenchError, match="other.json is not a compbench results file"):
        load_results(tmp_path)
