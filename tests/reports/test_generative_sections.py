"""The report's sections for generative runs: "problems compression broke", from samples logs
written as lm-eval writes them (only problems the baseline solved and the compressed run failed,
under the task's headline filter, lined up by document even when the runs' limits differ), and
a task's headline broken down by subject and level, as tables and grouped bars."""

import json
from pathlib import Path

from compbench.cli.main import main
from compbench.records.index import read_record

V1 = Path(__file__).parent.parent / "records" / "fixtures" / "v1"
QUESTIONS = ["How many eggs are left?", "What does Tom pay?", "How far did she run?", "How old is Ann?"]


def _samples(outputs: list[tuple[str, str, float]]) -> list[dict]:
    """lm-eval's samples lines (two filters a problem) for (output, flexible answer, score)."""
    lines = []
    for doc_id, (output, answer, score) in enumerate(outputs):
        doc = {"question": QUESTIONS[doc_id], "answer": "#### 1"}
        for name, value in (("strict-match", 0.0), ("flexible-extract", score)):
            lines.append({"doc_id": doc_id, "doc": doc, "resps": [[output]], "filtered_resps": [answer],
                          "filter": name, "exact_match": value, "doc_hash": f"hash{doc_id}"})
    return lines


def _metric(value: float) -> dict:
    return {"value": value, "stderr": 0.1, "higher_is_better": True}


def _run(folder: Path, recipe: str, outputs: list[tuple[str, str, float]], parts: dict | None = None,
         name: str | None = None, decode_tokens_per_s: float = 10.0, model: str | None = None,
         **settings) -> None:
    """A results file of `recipe` (a real one, relabelled) whose gsm8k samples are `outputs`;
    `parts`: metrics of parts of the documents ({"algebra": 0.5, "level_1": 1.0}); `name`: its
    file name (default the recipe); `model`: another preset name; `settings`: overrides, e.g. limit."""
    name = name or recipe
    [template] = [p for p in V1.glob("*.json") if json.loads(p.read_text())["run"]["recipe"] == recipe]
    data = read_record(template).to_dict()
    score = sum(s for *_, s in outputs) / len(outputs)
    metrics = {"exact_match,flexible-extract": _metric(score),
               **{f"exact_match_{part},flexible-extract": _metric(v) for part, v in (parts or {}).items()},
               "exact_match_algebra,strict-match": _metric(0.0)}  # another filter: not shown
    data["tasks"] = {"gsm8k": {"metrics": metrics, "headline": "exact_match,flexible-extract"}}
    data["settings"].update(tasks=["gsm8k"], **settings)
    if model:
        data["model"]["preset"] = model
    samples = f"{name}_run/samples_gsm8k.jsonl"
    data["generation"] = {"generated_tokens": 10, "decode_tokens_per_s": decode_tokens_per_s,
                          "time_to_first_token_s": 1.5, "tasks": {"gsm8k": {"samples": samples}}}
    (folder / samples).parent.mkdir(parents=True)
    (folder / samples).write_text("".join(json.dumps(line) + "\n" for line in _samples(outputs)))
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_the_report_lists_the_problems_the_baseline_solved_and_compression_broke(tmp_path, capsys):
    _run(tmp_path, "fp32", [("3 eggs. #### 3", "3", 1.0), ("He pays $5", "5", 1.0),
                            ("She ran 2 miles", "2", 0.0), ("Ann is 9", "9", 1.0)])
    _run(tmp_path, "int8", [("4 eggs. #### 4", "4", 0.0), ("He pays $5", "5", 1.0),
                            ("She ran 7 miles", "7", 1.0)], decode_tokens_per_s=23.46)  # Ann's not run
    assert main(["report", str(tmp_path), "--no-plots", "--output", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    header, int8_row = ([cell.strip() for cell in line.split("|")] for line in (
        next(line for line in text.splitlines() if line.startswith(start))
        for start in ("| model", "| smollm2-135m | int8")))
    assert int8_row[header.index("decode tok/s")] == "23.5" and int8_row[header.index("TTFT s")] == "1.5"
    section = text[text.index("## Problems compression broke"):]
    assert "### gsm8k: solved by fp32, failed by int8 (smollm2-135m)" in section
    assert ("1 of the 2 problems fp32 solved (of 3 both answered; exact_match,flexible-extract)"
            in section)
    assert "1. **Problem:** How many eggs are left?" in section
    assert "   - fp32 (answer 3): 3 eggs. #### 3" in section
    assert "   - int8 (answer 4): 4 eggs. #### 4" in section
    assert "Tom" not in section and "run?" not in section and "Ann" not in section
    capsys.readouterr()


def test_an_output_checked_whole_is_shown_once(tmp_path, capsys):
    """A task that scores the whole output (MATH: its answer is extracted while scoring) shows
    the output alone, not the same text again as the answer."""
    _run(tmp_path, "fp32", [("The answer is $\\boxed{3}$", "The answer is $\\boxed{3}$", 1.0)])
    _run(tmp_path, "int8", [("The answer is $\\boxed{4}$", "The answer is $\\boxed{4}$", 0.0)])
    assert main(["report", str(tmp_path), "--no-plots", "--output", str(tmp_path / "report.md")]) == 0
    section = (tmp_path / "report.md").read_text().split("## Problems compression broke")[1]
    assert "   - fp32: The answer is $\\boxed{3}$" in section and "(answer" not in section
    capsys.readouterr()


def test_runs_are_paired_as_the_tables_pair_them(tmp_path, capsys):
    """Only the newest fp32 run of the configuration is the baseline, and a compressed run of
    another limit has none: one section, from the newer baseline's samples."""
    _run(tmp_path, "fp32", [("3 eggs", "3", 1.0), ("He pays $5", "5", 1.0)])
    old = tmp_path / "fp32_old.json"
    _run(tmp_path, "fp32", [("3 eggs", "3", 1.0), ("He pays $9", "9", 0.0)], name="fp32_old")
    data = json.loads(old.read_text())
    data["timing"]["started_at"] -= 3600
    data["run_key"] = "older" + data["run_key"][5:]
    old.write_text(json.dumps(data))
    _run(tmp_path, "int8", [("4 eggs", "4", 0.0), ("He pays $6", "6", 0.0)])
    _run(tmp_path, "nf4", [("4 eggs", "4", 0.0)], name="nf4", limit=1)
    assert main(["report", str(tmp_path), "--no-plots", "--output", str(tmp_path / "report.md")]) == 0
    section = (tmp_path / "report.md").read_text().split("## Problems compression broke")[1]
    assert section.count("### gsm8k") == 1 and "failed by int8" in section
    assert "2 of the 2 problems fp32 solved" in section and "$9" not in section
    capsys.readouterr()


def test_no_section_without_samples_logs(tmp_path):
    assert main(["report", str(V1), "--no-plots", "--output", str(tmp_path / "report.md")]) == 0
    assert "Problems compression broke" not in (tmp_path / "report.md").read_text()


def test_the_report_breaks_the_headline_down_by_subject_and_level_with_grouped_bars(tmp_path, capsys):
    outputs = [("3", "3", 1.0), ("5", "5", 1.0)]
    _run(tmp_path, "fp32", outputs, {"algebra": 0.8, "geometry": 0.5, "level_1": 1.0, "level_2": 0.4})
    _run(tmp_path, "int8", outputs, {"algebra": 0.6, "geometry": 0.5, "level_1": 0.9, "level_2": 0.1})
    assert main(["report", str(tmp_path), "--output", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    subjects = text[text.index("## gsm8k: exact_match by subject"):]
    assert "| subject   | fp32   | int8   | kept   |" in subjects
    assert "| algebra   | 0.80   | 0.60   | 75%    |" in subjects
    assert "| geometry  | 0.50   | 0.50   | 100%   |" in subjects
    assert "Largest drop, int8: algebra (0.20 lower)" in subjects
    levels = text[text.index("## gsm8k: exact_match by level"):]
    assert "| 2       | 0.40   | 0.10   | 25%    |" in levels
    assert "Largest drop, int8: 2 (0.30 lower)" in levels
    assert (tmp_path / "gsm8k_by_subject.png").stat().st_size > 0 and "(gsm8k_by_level.png)" in text
    capsys.readouterr()


def test_two_models_get_a_breakdown_plot_each_and_their_columns_name_the_model(tmp_path, capsys):
    outputs = [("3", "3", 1.0), ("5", "5", 1.0)]
    for model in ("model-a", "model-b"):
        _run(tmp_path, "fp32", outputs, {"algebra": 0.8, "geometry": 0.5}, name=f"{model}-fp32", model=model)
        _run(tmp_path, "int8", outputs, {"algebra": 0.6 if model == "model-a" else 0.2, "geometry": 0.5},
             name=f"{model}-int8", model=model)
    assert main(["report", str(tmp_path), "--output", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    subjects = text[text.index("## gsm8k: exact_match by subject"):]
    assert "model-a: int8" in subjects and "model-b: int8" in subjects
    assert "Largest drop, model-b: int8: algebra (0.60 lower)" in subjects  # against its own fp32
    for model in ("model_a", "model_b"):
        assert (tmp_path / f"gsm8k_by_subject_{model}.png").stat().st_size > 0
    assert not (tmp_path / "gsm8k_by_subject.png").exists()
    capsys.readouterr()
