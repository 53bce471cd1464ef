"""The typed results record: version-1 files migrate and report exactly as before; records
round-trip through JSON with lm-eval's directions and standard errors."""

import shutil
from pathlib import Path

from compbench.cli.main import main
from compbench.records.index import load_results
from compbench.records.record import SCHEMA_VERSION, RunRecord

FIXTURES = Path(__file__).parent / "fixtures"


def _first_table(text: str) -> list[list[str]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append([cell.strip() for cell in line.strip("|").split("|")])
        elif lines:
            break
    return [lines[0], *lines[2:]]


def test_version_1_files_report_the_same_table_as_the_code_that_wrote_them(tmp_path, capsys):
    results = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", results)
    assert main(["report", str(results), "--output", str(tmp_path / "report.md"), "--no-plots"]) == 0
    new = _first_table((tmp_path / "report.md").read_text())
    score = new[0].index("Score")  # the one column added since: the compression Score
    old = _first_table((FIXTURES / "v1_report.md").read_text())
    assert [row[:score] + row[score + 1:] for row in new] == old


def test_version_1_files_migrate_to_typed_records(tmp_path):
    records = {r.recipe: r for r in load_results(FIXTURES / "v1")}
    fp32 = records["fp32"]
    assert fp32.schema_version == SCHEMA_VERSION and fp32.ok
    ppl = fp32.tasks["wikitext2_ppl"]
    assert ppl.headline == "word_perplexity,none" and ppl.label == "wikitext2 word ppl"
    assert ppl.metrics["word_perplexity,none"].higher_is_better is False  # from the v1 config
    assert fp32.tasks["e_kar"].metrics["acc,none"].higher_is_better is True
    assert fp32.tasks["e_kar"].metrics["acc,none"].stderr is None  # v1 ran bootstrap_iters=0
    assert fp32.limit == 3 and fp32.task_names == ["wikitext2_ppl", "wikitext2_chunked", "e_kar", "sst2"]
    assert records["rtn:4"].compression.compression_ratio > 3


def test_records_round_trip_through_json():
    [record] = [r for r in load_results(FIXTURES / "v1") if r.recipe == "nf4"]
    again = RunRecord.from_dict(record.to_dict())
    assert again == record
