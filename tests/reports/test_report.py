"""The report holds the measured numbers of the results files; the store writes atomically."""

import json

import pytest

from compbench.cli.main import main
from compbench.core.io import write_json_atomic
from compbench.errors import CompbenchError
from compbench.records.index import load_results


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The report's markdown table: its header and its rows of cells (two columns share the
    label "Δ vs fp32", so cells are found by position)."""
    lines = []
    for line in text.splitlines():  # the first table: the comparison
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
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


def test_foreign_json_is_named_and_skipped(tmp_path):
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(CompbenchError, match="other.json is not a compbench or lm-eval results file"):
        load_results(tmp_path)
    warnings = []
    with pytest.raises(CompbenchError, match="no results files"):
        load_results(tmp_path, warn=warnings.append)
    assert len(warnings) == 1 and "other.json" in warnings[0]


# --- shaped tables, Score, seeds, formats, foreign files (records of the committed v1 fixture) ---

import dataclasses  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

from compbench.records.index import write_record  # noqa: E402
from compbench.records.record import RunRecord  # noqa: E402
from compbench.reports.table import build_tables  # noqa: E402

V1 = Path(__file__).parent.parent / "records" / "fixtures" / "v1"  # version-1 files (tests/records)
PPL = ("wikitext2_ppl", "word_perplexity,none")
ACC = ("sst2", "acc,none")


def _v1() -> dict[str, RunRecord]:
    return {r.recipe: r for r in load_results(V1)}


def _variant(record: RunRecord, recipe: str, steps: list[dict], scale: float, started: float) -> RunRecord:
    """A copy of a real record as another recipe, every metric scaled (a synthetic neighbour)."""
    tasks = {name: dataclasses.replace(task, metrics={
        key: dataclasses.replace(m, value=None if m.value is None else m.value * scale)
        for key, m in task.metrics.items()}) for name, task in record.tasks.items()}
    artifact = {**record.artifact, "recipe": {"string": recipe, "steps": steps}}
    return dataclasses.replace(record, artifact=artifact, tasks=tasks, run_key=recipe,
                               timing=dataclasses.replace(record.timing, started_at=started))


def test_score_is_ratio_over_one_plus_the_mean_drop_by_lm_evals_directions():
    runs = _v1()
    table = build_tables(list(runs.values()), "fp32", only=("comparison",))[0]
    rows = {row[1]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    base = runs["fp32"]
    for recipe in ("int8", "nf4", "rtn:4"):
        record = runs[recipe]
        drops = []
        for task, result in record.tasks.items():
            key = result.headline
            value, reference = result.metrics[key].value, base.tasks[task].metrics[key].value
            hib = result.metrics[key].higher_is_better
            drops.append((reference - value) / reference if hib else (value - reference) / reference)
        expected = record.compression.compression_ratio / (1 + statistics.fmean(drops))
        assert float(rows[recipe]["Score"]) == pytest.approx(expected, abs=0.005)
    assert float(rows["fp32"]["Score"]) == 1.0
    # perplexity is lower-is-better in the record, accuracy higher: a pruned model that blew up
    # perplexity scores far below its ratio
    assert float(rows["magnitude:0.5"]["Score"]) < 0.2


def _grid_records() -> list[RunRecord]:
    runs = _v1()
    magnitude = runs["magnitude:0.5"]
    step = magnitude.artifact["recipe"]["steps"][0]
    rtn = runs["rtn:4"]
    made = [runs["fp32"], magnitude]
    for i, (sparsity, scale) in enumerate(((0.25, 0.1), (0.75, 3.0))):
        config = {**step["config"], "sparsity": sparsity}
        made.append(_variant(magnitude, f"magnitude:{sparsity}", [{**step, "config": config}], scale, 10 + i))
    wanda = {"method": "wanda", "version": 1, "config": {"sparsity": 0.5, "n": 2, "m": 4}}
    made.append(_variant(magnitude, "wanda:n=2:m=4", [wanda], 0.5, 20))
    for owl, scale in ((False, 2.0), (True, 1.5)):  # uniform Wanda and OWL at the same sparsity
        config = {"sparsity": 0.75, **({"owl": True} if owl else {})}
        made.append(_variant(magnitude, "wanda:0.75" + (":owl=true" if owl else ""),
                             [{"method": "wanda", "version": 1, "config": config}], scale, 40 + owl))
    made.append(rtn)
    rtn_step = rtn.artifact["recipe"]["steps"][0]
    made.append(_variant(rtn, "rtn:8", [{**rtn_step, "config": {**rtn_step["config"], "bits": 8}}], 0.8, 30))
    asymmetric = {**rtn_step, "config": {**rtn_step["config"], "sym": False}}
    made.append(_variant(rtn, "rtn:4:sym=false", [asymmetric], 0.9, 31))  # a variant: its own line
    return made


def test_sparsity_bits_and_task_tables_are_shaped_from_the_recipes():
    records = _grid_records()
    tables = {t.title: t for t in build_tables(records, "fp32")}
    sparsity = tables["wikitext2 word ppl per method and sparsity"]
    assert sparsity.header == ["method", "sparsity 0", "sparsity 0.25", "sparsity 0.5", "sparsity 0.75",
                               "sparsity 2:4"]
    by_method = {row[0]: row for row in sparsity.rows}
    value = {r.recipe: r.metric(*PPL).value for r in records}
    assert by_method["magnitude"][1:5] == [f"{value[r]:.2f}" for r in
                                          ("fp32", "magnitude:0.25", "magnitude:0.5", "magnitude:0.75")]
    assert by_method["wanda"][5] == f"{value['wanda:n=2:m=4']:.2f}" and by_method["wanda"][2] == ""
    assert by_method["wanda"][4] == f"{value['wanda:0.75']:.2f}"
    assert by_method["wanda (OWL)"][4] == f"{value['wanda:0.75:owl=true']:.2f}"  # its own row
    bits = tables["Size, speed and perplexity per bit-width"]
    assert [row[:2] for row in bits.rows] == [["uncompressed", ""], ["rtn", "8"], ["rtn", "4"],
                                              ["rtn sym=false", "4"]]
    assert bits.rows[2][bits.header.index("wikitext2 word ppl")] == f"{value['rtn:4']:.2f}"
    accuracy = tables["magnitude: accuracy and F1 per task vs sparsity"]
    assert [row[0] for row in accuracy.rows] == ["e_kar acc", "sst2 acc"]


def test_a_sweep_over_two_models_keeps_each_models_grid_and_baseline_apart():
    first = _grid_records()
    # the same runs on a second model, every metric 3x: its own dense baseline and rows
    second = [dataclasses.replace(_variant(r, r.recipe, r.artifact["recipe"]["steps"], 3.0,
                                           r.timing.started_at + 100),
                                  model={**r.model, "preset": "other-model"}) for r in first]
    tables = {t.title: t for t in build_tables(first + second, "fp32")}
    sparsity = {row[0]: row for row in tables["wikitext2 word ppl per method and sparsity"].rows}
    value = {(r.preset, r.recipe): r.metric(*PPL).value for r in first + second}
    for model in {r.preset for r in first} | {"other-model"}:
        row = sparsity[f"{model}: wanda (OWL)"]
        assert row[1] == f"{value[(model, 'fp32')]:.2f}"  # the model's own baseline
        assert row[4] == f"{value[(model, 'wanda:0.75:owl=true')]:.2f}"
    bits = [row[:2] for row in tables["Size, speed and perplexity per bit-width"].rows]
    assert bits.count(["other-model: uncompressed", ""]) == 1 and ["other-model: rtn", "4"] in bits


def test_seeds_are_one_row_with_mean_and_standard_deviation():
    runs = _v1()
    fp32, int8 = runs["fp32"], runs["int8"]
    seeded = [_variant(int8, "int8:seed=1", int8.artifact["recipe"]["steps"], 1.1, 50),
              _variant(int8, "int8:seed=2", int8.artifact["recipe"]["steps"], 0.9, 51)]
    table = build_tables([fp32, int8, *seeded], "fp32", only=("comparison",))[0]
    row = dict(zip(table.header, next(r for r in table.rows if r[1] == "int8"), strict=True))
    values = [r.metric(*PPL).value for r in (int8, *seeded)]
    assert row["seeds"] == "3"
    assert row["wikitext2 word ppl"] == f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_report_writes_plots_csv_and_json_and_skips_a_corrupt_file(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    for record in _grid_records():
        write_record(results / f"{record.run_key.replace(':', '_')}.json", record)
    (results / "broken.json").write_text('{"schema_version": 2, "status": ')
    assert main(["report", str(results)]) == 0
    captured = capsys.readouterr()
    assert "warning: skipping cannot read results file" in captured.err and "broken.json" in captured.err
    text = (results / "report.md").read_text()
    plots = sorted(p.name for p in results.glob("*.png"))
    assert {"sparsity_wikitext2_word_ppl.png", "tasks_magnitude.png", "size_wikitext2_word_ppl.png",
            "bits.png"} <= set(plots)
    for name in plots:
        assert f"]({name})" in text and (results / name).stat().st_size > 10_000
    assert main(["report", str(results), "--format", "json", "--output", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert [t["name"] for t in data["tables"]][:2] == ["comparison", "sparsity"]
    assert main(["report", str(results), "--format", "csv", "--table", "comparison",
                 "--output", str(tmp_path / "r.csv")]) == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("model,recipe,size MB,ratio") and len(lines) == 1 + len(_grid_records())
    # the JSON report written into the results folder is not read back as a result
    assert main(["report", str(results), "--format", "json"]) == 0
    assert main(["report", str(results), "--no-plots"]) == 0
    assert "report.json" not in capsys.readouterr().err


def test_lm_evals_own_results_files_are_reported(tmp_path, capsys):
    """A results file as `lm_eval --output_path` writes it (the keys lm-eval 0.4 writes)."""
    def output(pretrained: str, ppl: float, acc: float) -> dict:
        return {"results": {"wikitext": {"alias": "wikitext", "word_perplexity,none": ppl,
                                         "word_perplexity_stderr,none": "N/A"},
                            "arc_easy": {"alias": "arc_easy", "acc,none": acc, "acc_stderr,none": 0.01}},
                "higher_is_better": {"wikitext": {"word_perplexity": False}, "arc_easy": {"acc": True}},
                "n-samples": {"wikitext": {"original": 62, "effective": 62}},
                "versions": {"wikitext": 2.0, "arc_easy": 1.0},
                "config": {"model": "hf", "model_args": f"pretrained={pretrained},dtype=float32",
                           "limit": None}, "date": 1_790_000_000.0, "lm_eval_version": "0.4.13"}

    folder = tmp_path / "lm_eval_out" / "org__model"
    folder.mkdir(parents=True)
    (folder / "results_2026-11-01.json").write_text(json.dumps(output("org/model", 20.0, 0.70)))
    (folder / "results_2026-11-02.json").write_text(json.dumps(output("org/model-gptq", 25.0, 0.63)))
    assert main(["report", str(tmp_path / "lm_eval_out"), "--baseline", "model", "--no-plots"]) == 0
    header, rows = _table(capsys.readouterr().out)
    row = dict(zip(header, rows[1], strict=True))
    assert row["recipe"] == "model-gptq" and row["wikitext word_perplexity"] == "25.00"
    assert row["arc_easy acc"] == "0.63"
    assert rows[1][header.index("wikitext word_perplexity") + 1] == "+25.0%"
    assert rows[1][header.index("arc_easy acc") + 1] == "-10.0%"


def test_an_older_run_of_the_same_configuration_is_not_a_seed():
    runs = _v1()
    fp32, int8 = runs["fp32"], runs["int8"]
    older = _variant(int8, "int8", int8.artifact["recipe"]["steps"], 2.0, -1)  # ran before, other key
    table = build_tables([fp32, older, int8], "fp32", only=("comparison",))[0]
    assert "seeds" not in table.header
    row = dict(zip(table.header, next(r for r in table.rows if r[1] == "int8"), strict=True))
    assert row["wikitext2 word ppl"] == f"{int8.metric(*PPL).value:.2f}"  # the newest run's
    assert any("1 older run(s)" in note for note in table.notes)
