"""The report holds the measured numbers of the results files; the store writes atomically."""

import json

import pytest

from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.harness.cli import main
from compbench.reports.store import load_results


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The report's markdown table: its header and its rows of cells (two columns share the
    label "Δ vs fp32", so cells are found by position)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def test_report_table_holds_the_measured_numbers(sweep, tmp_path, capsys):
    out, runs, _ = sweep
    report = tmp_path / "report.md"
    assert main(["report", str(out), "--output", str(report)]) == 0
    header, table = _table(report.read_text())
    column = {label: header.index(label) for label in
              ("recipe", "size MB", "ratio", "wikitext2 word ppl", "wikitext2 ppl (GPTQ chunks)")}
    rows = {row[column["recipe"]]: row for row in table}
    assert set(rows) == set(runs)
    assert table[0][column["recipe"]] == "fp32"  # the baseline comes first
    base = {key: runs["fp32"].metric(task, key).value for task, key in
            (("wikitext2_ppl", "word_perplexity,none"), ("wikitext2_chunked", "perplexity,none"))}
    for recipe, record in runs.items():
        row = rows[recipe]
        # each cell read back as a number, within its printed precision, against the record
        assert float(row[column["size MB"]]) == pytest.approx(record.compression.size_bytes / 2**20,
                                                              abs=0.05)
        assert float(row[column["ratio"]].rstrip("x")) == pytest.approx(
            runs["fp32"].compression.size_bytes / record.compression.size_bytes, abs=0.005)
        for label, task, key in (("wikitext2 word ppl", "wikitext2_ppl", "word_perplexity,none"),
                                 ("wikitext2 ppl (GPTQ chunks)", "wikitext2_chunked", "perplexity,none")):
            value = record.metric(task, key).value
            assert float(row[column[label]]) == pytest.approx(value, abs=0.005)
            assert header[column[label] + 1] == "Δ vs fp32"
            change = float(row[column[label] + 1].rstrip("%")) / 100
            assert change == pytest.approx(value / base[key] - 1, abs=0.0005)


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
