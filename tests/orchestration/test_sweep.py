"""Sweep files: validation with key paths, grid expansion; and real sweeps on the embedded model
that are SIGKILLed (the driver, then a worker) and resumed, served from the model store, gated,
and (slow tier) run on a local Ray instance; test_executors.py checks the Ray executor itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from compbench.cli.main import main
from compbench.orchestration.sweep import expand_braces, load_sweep
from compbench.records.index import read_record
from compbench.sweeps import SWEEPS_DIR

BASE = """\
models: [smollm2-135m]
recipes: [fp32, int8]
tasks: [wikitext2_chunked]
limit: 1
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_braces_expand_to_every_combination():
    assert expand_braces("wanda:{0.2,0.5}") == ["wanda:0.2", "wanda:0.5"]
    assert expand_braces("{magnitude,wanda}:{0.2, 0.5}") == [
        "magnitude:0.2", "magnitude:0.5", "wanda:0.2", "wanda:0.5"]
    assert expand_braces("nf4") == ["nf4"]
    assert expand_braces("magnitude:0.25{,+int8,+nf4}") == [
        "magnitude:0.25", "magnitude:0.25+int8", "magnitude:0.25+nf4"]


def test_seeds_repeat_calibrated_recipes_only_and_calibration_fills_defaults(tmp_path):
    sweep = load_sweep(_file(tmp_path, BASE.replace(
        "recipes: [fp32, int8]",
        'recipes: [fp32, "{magnitude,wanda}:0.5", "wanda:0.3:nsamples=2"]\n'
        "calibration: {nsamples: 8, seqlen: 256}\nseeds: [0, 1]")))
    assert [str(s.recipe) for s in sweep.specs] == [
        "fp32", "magnitude:0.5",
        "wanda:0.5:nsamples=8:seqlen=256", "wanda:0.5:nsamples=8:seqlen=256:seed=1",
        "wanda:0.3:nsamples=2:seqlen=256", "wanda:0.3:nsamples=2:seqlen=256:seed=1"]
    assert sweep.name == "study" and sweep.output_dir == Path("results/study")
    assert sweep.seeds == (0, 1) and sweep.baseline == "fp32"
    assert sweep.specs[0].settings.limit == 1


def test_a_model_entry_may_name_its_own_recipes(tmp_path):
    sweep = load_sweep(_file(tmp_path, BASE.replace(
        "[smollm2-135m]", "[smollm2-135m, {model: smollm2-135m, recipes: [fp32, nf4]}]")))
    assert [(s.model, str(s.recipe)) for s in sweep.specs] == [
        ("smollm2-135m", "fp32"), ("smollm2-135m", "int8"),
        ("smollm2-135m", "fp32"), ("smollm2-135m", "nf4")]


@pytest.mark.parametrize("change, message", [
    (("int8]", "int8, wandaa:0.5]"),
     "recipes[2]: unknown compression method 'wandaa'; did you mean 'wanda'?"),
    (("int8]", 'int8, "wanda:{0.5,1.5}"]'), "recipes[2] (wanda:1.5): wanda: sparsity must be"),
    (("[wikitext2_chunked]", "[wikitext2_chunked, no_such_task]"), "tasks[1]: unknown task 'no_such_task'"),
    (("[smollm2-135m]", "[smollm2-135m, smolm2]"), "models[1]: unknown model preset 'smolm2'"),
    (("limit: 1", "limit: -3"), "limit: expected a whole number of documents >= 1 or a fraction "
     "between 0 and 1, got -3"),
    (("limit: 1", "limit: 2.5"), "limit: expected a whole number of documents >= 1"),
    (("limit: 1", "limit: {wikitext2_ppl: 3}"),
     "limit: 'wikitext2_ppl' is not one of the tasks (wikitext2_chunked); a per-task limit names "
     "one of them"),
    (("limit: 1", "limit: {wikitext2_chunked: true}"),
     "limit: wikitext2_chunked: expected a whole number of documents >= 1 or a fraction between 0 "
     "and 1, got True"),
    (("limit: 1", "limit: {}"), "limit: expected a number or TASK: N pairs, got {}"),
    (("limit: 1", "limit: 1\nseeds: [0, x]"), "seeds[1]: expected an integer"),
    (("limit: 1", "limit: 1\ncalibration: {nsamples: 0}"), "calibration: nsamples must be >= 1"),
    (("limit: 1", "limit: 1\ncalibration: {dataset: c4}"), "calibration: calibration must be one of"),
    (("limit: 1", "limit: 1\ncalibation: {}"), "calibation: unknown key; allowed: name"),
    (("limit: 1", "limit: 1\nbaseline: bf16"), "baseline: 'bf16' is not one of the recipes"),
    (("recipes: [fp32, int8]", "recipes: fp32"), "recipes: expected a non-empty list"),
    (("models: [smollm2-135m]\n", ""), "models: required"),
    (("limit: 1", "limit: 1\ninclude_paths: [nowhere]"), "include_paths: task folder"),
    (("recipes: [fp32, int8]", "recipes: [fp32, int8, int8]"), "recipes: listed more than once: int8"),
    (("tasks: [wikitext2_chunked]", "tasks: [wikitext2_chunked\n  - x"), "not valid YAML"),
    (("[smollm2-135m]", "[smollm2-135m, {model: smollm2-135m, recipes: [fp32, nf5]}]"),
     "models[1].recipes[1]: unknown compression method 'nf5'"),
    (("[smollm2-135m]", "[{model: smollm2-135m, recipes: [int8]}]"),
     "baseline: 'fp32' is not one of the recipes of smollm2-135m"),
    (("[smollm2-135m]", "[{name: smollm2-135m}]"), "models[0]: expected a model name or {model: NAME"),
    (("limit: 1", "limit: 1\nbatch_size: many"), "batch_size: expected int, got 'many' (or auto)"),
    (("limit: 1", "limit: 1\ndtype: bf16"), "dtype: 'bf16' is not one of float32, bfloat16, float16, auto"),
    (("limit: 1", "limit: 1\nfewshot_as_multiturn: true"), "fewshot_as_multiturn needs a chat template"),
    (("limit: 1", "limit: 1\ngen_kwargs: {temperature: hot}"),
     "gen_kwargs: temperature must be a number >= 0, got 'hot'"),
    (("limit: 1", "limit: 1\nkv_cache: int3"),
     "kv_cache: 'int3' is not a cache kind; use one of int8, int4, int2"),
    (("limit: 1", "limit: 1\ngen_kwargs: {until: []}"),
     "gen_kwargs: until must be a stop string or a non-empty list of non-empty stop strings, got []"),
    (("limit: 1", "limit: 1\napply_chat_template: 3"), "apply_chat_template: expected bool or str, got 3"),
    (("limit: 1", "limit: 1\napply_chat_template: true\nsystem_instruction: ' '"),
     "system_instruction: must not be empty"),
])
def test_bad_sweep_files_are_one_line_naming_the_key(tmp_path, capsys, change, message):
    path = _file(tmp_path, BASE.replace(*change))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"compbench: error: {path}")
    assert message in err, err


def test_a_limit_per_task_enters_the_run_key_and_leaves_the_other_tasks_whole(tmp_path):
    from compbench.orchestration.plan import make_plan

    text = BASE.replace("[wikitext2_chunked]", "[wikitext2_chunked, commonsense_qa]")
    per_task = load_sweep(_file(tmp_path, text.replace("limit: 1", "limit: {wikitext2_chunked: 2}")))
    settings = per_task.specs[0].settings
    assert settings.task_limits == (("wikitext2_chunked", 2),) and settings.limit is None
    assert (settings.limit_of("wikitext2_chunked"), settings.limit_of("commonsense_qa")) == (2, None)
    fields = make_plan([per_task.specs[0]], tmp_path / "out").runs[0].eval_fields
    assert fields["task_limits"] == {"wikitext2_chunked": 2}
    one = load_sweep(_file(tmp_path, text.replace("limit: 1", "limit: 2"))).specs[0]
    assert "task_limits" not in make_plan([one], tmp_path / "out").runs[0].eval_fields  # runs made
    # before per-task limits keep their keys


def test_a_users_own_task_folder_is_added_beside_compbenchs(tmp_path, data_dir):
    from compbench.tasks import TASKS_DIR

    folder = tmp_path / "my_tasks"
    folder.mkdir()
    (folder / "my_chunked.yaml").write_text(
        (TASKS_DIR / "wikitext2_chunked.yaml").read_text()
        .replace("task: wikitext2_chunked", "task: my_chunked"))
    path = _file(tmp_path, BASE.replace("[wikitext2_chunked]", "[wikitext2_chunked, my_chunked]")
                 + "include_paths: [my_tasks]\n")
    sweep = load_sweep(path)
    assert sweep.specs[0].settings.include_paths == (str(folder.resolve()),)
    from compbench.orchestration.plan import make_plan

    plan = make_plan(list(sweep.specs), tmp_path / "out")
    fingerprints = plan.runs[0].eval_fields["task_fingerprints"]
    assert "yaml_sha256" in fingerprints["my_chunked"]  # a user's YAML: its content is in the key
    assert "yaml_sha256" not in fingerprints["wikitext2_chunked"]  # compbench's: its version is


# --- real sweeps -------------------------------------------------------------------------------

STUDY = BASE.replace("recipes: [fp32, int8]", 'recipes: [fp32, int8, "magnitude:0.5"]')


def _command(path: Path, out: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compbench.cli.main", "sweep", str(path), "--output-dir", str(out),
            "--store", str(store), *extra]


def _workers(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in process.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def _wait(condition, timeout_s: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _results(out: Path) -> list[Path]:
    return sorted(out.glob("*.json")) if out.is_dir() else []


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, data_dir):
    """A 3-run sweep whose driver is SIGKILLed after the first run, whose rerun has its second
    run's worker SIGKILLed, and whose third invocation finishes it."""
    root = tmp_path_factory.mktemp("killed")
    path, out, store = _file(root, STUDY), root / "results", root / "store"
    env = {**os.environ}
    log = []

    driver = subprocess.Popen(_command(path, out, store), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    _wait(lambda: len(_results(out)) == 1, what="the first run's results file")
    workers = _workers(psutil.Process(driver.pid))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _wait(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers),
          timeout_s=20, what="the orphaned worker to exit")
    first = _results(out)[0]
    first_bytes = first.read_bytes()
    log.append(("after driver kill", [p.name for p in _results(out)]))

    driver = subprocess.Popen(_command(path, out, store), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    parent = psutil.Process(driver.pid)
    _wait(lambda: _workers(parent), what="the second run's worker")
    time.sleep(3)
    _workers(parent)[0].send_signal(signal.SIGKILL)
    second_out, _ = driver.communicate(timeout=600)
    second_rc = driver.returncode

    third = subprocess.run(_command(path, out, store), env=env, capture_output=True, text=True, timeout=600)
    return {"out": out, "store": store, "path": path, "first": first, "first_bytes": first_bytes,
            "second_rc": second_rc, "second_out": second_out, "third": third, "log": log}


@pytest.mark.heavy
def test_sigkilled_driver_and_worker_leave_every_run_exactly_once(killed_and_resumed):
    k = killed_and_resumed
    assert k["log"][0][1] == [k["first"].name]
    assert k["second_rc"] == 1, k["second_out"]  # the killed worker's run failed, the sweep went on
    assert "done already" in k["second_out"] and "FAILED" in k["second_out"]
    third = k["third"]
    assert third.returncode == 0, third.stderr[-2000:]
    assert third.stdout.count("done already") == 2 and third.stdout.count(": running") == 1
    files = _results(k["out"])
    records = [read_record(p) for p in files]
    assert sorted(r.recipe for r in records) == ["fp32", "int8", "magnitude:0.5"]
    assert all(r.ok for r in records)
    assert k["first"].read_bytes() == k["first_bytes"]  # the finished run was not redone
    leftovers = [p.name for p in k["out"].iterdir() if ".compbench-" in p.name]
    assert not leftovers


@pytest.mark.heavy
def test_the_store_serves_a_second_sweep_without_compressing(killed_and_resumed, tmp_path):
    k = killed_and_resumed
    path = _file(tmp_path, STUDY.replace('recipes: [fp32, int8, "magnitude:0.5"]',
                                         'recipes: [int8, "magnitude:0.5"]\nbaseline: int8'))
    out = tmp_path / "again"
    result = subprocess.run(_command(path, out, k["store"]), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("loaded from store") == 2, result.stdout
    again = {r.recipe: r for r in map(read_record, _results(out))}
    before = {r.recipe: r for r in map(read_record, _results(k["out"]))}
    assert before["fp32"].model["origin"] == "compressed (recipe not storable)"  # nothing to store
    for recipe in ("int8", "magnitude:0.5"):
        assert again[recipe].model["origin"] == "loaded from store"
        assert again[recipe].run_key == before[recipe].run_key
        assert again[recipe].compression.steps == before[recipe].compression.steps
        assert again[recipe].tasks == before[recipe].tasks  # the very same numbers
    listed = subprocess.run([sys.executable, "-m", "compbench.cli.main", "store", "list", "--store",
                             str(k["store"])], capture_output=True, text=True)
    assert "int8" in listed.stdout and "magnitude:0.5" in listed.stdout
    assert "2 compressed model(s)" in listed.stdout


@pytest.mark.heavy  # it reads the killed-and-resumed sweep's results (minutes to build)
def test_gate_fails_a_worse_recipe_naming_the_metric_and_passes_a_good_one(killed_and_resumed, tmp_path,
                                                                          capsys):
    out = killed_and_resumed["out"]
    baseline = tmp_path / "baseline.yaml"
    assert main(["gate", "--baseline", str(baseline), "--results", str(out), "--update"]) == 0
    assert main(["gate", "--baseline", str(baseline), "--results", str(out)]) == 1
    captured = capsys.readouterr()
    assert "magnitude:0.5 wikitext2_chunked/perplexity recovers" in captured.err
    assert "| int8 " in captured.out and "| ok" in captured.out and "FAIL" in captured.out
    records = {r.recipe: r for r in map(read_record, _results(out))}
    fp32, pruned = (records[r].tasks["wikitext2_chunked"].metrics["perplexity,none"].value
                    for r in ("fp32", "magnitude:0.5"))
    assert pruned > fp32  # perplexity rose: lower is better, so recovery = fp32 / pruned < 1
    assert f"{fp32 / pruned:.3f}" in captured.out

    good = tmp_path / "good"
    good.mkdir()
    for path in _results(out):
        if read_record(path).recipe in ("fp32", "int8"):
            (good / path.name).write_bytes(path.read_bytes())
    assert main(["gate", "--baseline", str(baseline), "--results", str(good)]) == 2  # not the whole
    assert "are not in the results: smollm2-135m magnitude:0.5" in capsys.readouterr().err
    subset = tmp_path / "subset.yaml"
    assert main(["gate", "--baseline", str(subset), "--results", str(good), "--update"]) == 0
    capsys.readouterr()
    assert main(["gate", "--baseline", str(subset), "--results", str(good)]) == 0
    assert "gate: passed (1 of 1 checks hold)" in capsys.readouterr().out

    text = subset.read_text()
    subset.write_text(text.replace("wikitext2_chunked/perplexity", "wikitext2_chunked/other"))
    assert main(["gate", "--baseline", str(subset), "--results", str(good)]) == 2
    assert "has no value for metric wikitext2_chunked/perplexity" in capsys.readouterr().err
    subset.write_text(text.replace("default_threshold: 0.95", "default_threshold: 1.5"))
    assert main(["gate", "--baseline", str(subset), "--results", str(good)]) == 2
    assert "a recovery threshold must be a number in (0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.slow  # a Ray worker importing and running a real run: minutes beside another test worker
def test_ray_executor_writes_the_same_results_as_local_processes(killed_and_resumed, tmp_path):
    pytest.importorskip("ray")
    k = killed_and_resumed
    # one run (int8) keeps it short: Ray's workers start slowly beside another xdist worker
    path = _file(tmp_path, BASE.replace("[fp32, int8]", "[int8]\nbaseline: int8"))
    out = tmp_path / "ray"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run(_command(path, out, k["store"], "--executor", "ray", "--ray-cpus", "2"),
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    local = {p.name: read_record(p) for p in _results(k["out"])}
    ray = {p.name: read_record(p) for p in _results(out)}
    assert set(ray) <= set(local) and len(ray) == 1  # same run keys, so the same file names
    for name, record in ray.items():
        assert record.tasks == local[name].tasks
        assert record.compression.size_bytes == local[name].compression.size_bytes
    assert json.loads((out / next(iter(ray))).read_text())["status"] == "ok"


@pytest.mark.parametrize("path", sorted(SWEEPS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_is_a_valid_sweep_file(path):
    sweep = load_sweep(path)
    assert sweep.specs and sweep.description
    if "original_models" in path.read_text():  # the studies name the models they were made on
        assert load_sweep(path, original=True).specs[0].model != "smollm2-135m"


USER_TASK = """\
task: user_sst2
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {file}
validation_split: validation
output_type: multiple_choice
doc_to_text: "{{{{sentence}}}}\\nQuestion: Is this sentence positive or negative?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
"""


def _user_task_folder(tmp_path: Path, data_dir: Path) -> Path:
    """A user's own lm-eval task, as a user writes one: stock lm-eval YAML, a local JSON file."""
    folder = tmp_path / "user_tasks"
    folder.mkdir()
    (folder / "user_sst2.yaml").write_text(USER_TASK.format(file=data_dir / "sst2" / "validation.jsonl"))
    return folder


@pytest.mark.heavy
def test_eval_runs_a_users_task_beside_compbenchs_and_prints_its_metric(tmp_path, data_dir, capsys):
    folder = _user_task_folder(tmp_path, data_dir)
    out = tmp_path / "out"
    assert main(["eval", "--recipe", "fp32", "--tasks", "user_sst2,wikitext2_chunked", "--limit", "4",
                 "--include-path", str(folder), "--output-dir", str(out), "--no-store"]) == 0
    printed = capsys.readouterr().out
    (record,) = [read_record(p) for p in _results(out)]
    accuracy = record.tasks["user_sst2"].metrics["acc,none"]
    assert accuracy.higher_is_better and record.tasks["user_sst2"].n_effective == 4
    assert accuracy.value in (0, 0.25, 0.5, 0.75, 1)
    assert "yaml_sha256" in record.settings["task_fingerprints"]["user_sst2"]
    ppl = record.tasks["wikitext2_chunked"].metrics["perplexity,none"].value
    assert f"user_sst2 acc {accuracy.value:.4g}" in printed  # the run's line
    assert f"wikitext2 ppl (GPTQ chunks) {ppl:.4g}" in printed
    assert "| smollm2-135m | fp32" in printed  # and the comparison table at the end


@pytest.mark.heavy
def test_lm_eval_cli_include_path_adds_to_compbenchs_tasks(tmp_path, data_dir):
    folder = _user_task_folder(tmp_path, data_dir)
    command = [sys.executable, "-m", "compbench.cli", "lm-eval", "validate",
               "--tasks", "user_sst2,wikitext2_ppl", "--include_path", str(folder)]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All tasks found and valid" in out.stdout
    alone = subprocess.run(command[:-2], capture_output=True, text=True)  # compbench's tasks only
    assert alone.returncode == 1 and "Tasks not found: user_sst2" in alone.stdout
