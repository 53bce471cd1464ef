"""The report holds the measured numbers of the results files; the store writes atomically."""

import json

import pytest

from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.harness.cli import main
from compbench.reports.store import load_results


def _table(text: str) -> list[dict[str, str]]:
    """The report's markdown table as rows of {column: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def test_report_table_holds_the_measured_numbers(sweep, tmp_path, capsys):
    out, runs, _ = sweep
    report = tmp_path / "report.md"
    assert main(["report", str(out), "--output", str(report)]) == 0
    rows = {row["recipe"]: row for row in _table(report.read_text())}
    assert set(rows) == set(runs)
    assert rows["fp32"] == next(iter(rows.values()))  # the baseline comes first
    fp32 = runs["fp32"].metric("wikitext2_ppl", "word_perplexity,none").value
    for recipe, record in runs.items():
        row = rows[recipe]
        ppl = record.metric("wikitext2_ppl", "word_perplexity,none").value
        chunked = record.metric("wikitext2_chunked", "perplexity,none").value
        # each cell read back as a number, within its printed precision, against the record
        assert float(row["size MB"]) == pytest.approx(record.compression.size_bytes / 2**20, abs=0.05)
        assert float(row["ratio"].rstrip("x")) == pytest.approx(
            runs["fp32"].compression.size_bytes / record.compression.size_bytes, abs=0.005)
        assert float(row["wikitext2 word ppl"]) == pytest.approx(ppl, abs=0.005)
        assert float(row["wikitext2 ppl (GPTQ chunks)"]) == pytest.approx(chunked, abs=0.005)
        change = float(next(v for k, v in row.items() if k.startswith("Δ")).rstrip("%")) / 100
        assert change == pytest.approx(ppl / fp32 - 1, abs=0.0005)


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
