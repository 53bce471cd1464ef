"""KASUT math-topic classification and the MMLU subset, on the real model and real data."""

import json

import pytest

from compbench.cli.main import main
from compbench.records.index import read_record

LIMIT = 8


@pytest.fixture(scope="module")
def task_manager(data_dir):
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    return TaskManager(include_path=str(TASKS_DIR))


def _docs(task, task_manager):
    from lm_eval.tasks import get_task_dict

    [loaded] = get_task_dict([task], task_manager).values()
    return loaded, list(loaded.eval_docs)


@pytest.mark.heavy
def test_kasut_split_is_the_fixed_90_10(task_manager, data_dir):
    from compbench.tasks.choices import load_kasut

    parts = load_kasut("x", "kasut_math", ["train"])
    assert (len(parts["train"]), len(parts["test"])) == (9170, 1019)
    again = load_kasut("x", "kasut_math", ["train"])
    assert parts["test"]["question"][:20] == again["test"]["question"][:20]
    assert not set(parts["test"]["question"]) & set(parts["train"]["question"][:2000])
    task, docs = _docs("kasut_math", task_manager)
    assert len(docs) == 1019
    assert task.doc_to_text(docs[0]).startswith("Math problem: ")


def test_mmlu_subset_takes_k_per_subject_with_in_subject_shots(task_manager, data_dir):
    task, docs = _docs("mmlu_subset", task_manager)
    assert len(docs) == 57 * 5
    first_test = json.loads((data_dir / "mmlu" / "test.jsonl").read_text().splitlines()[0])
    dev = [json.loads(line) for line in (data_dir / "mmlu" / "dev.jsonl").read_text().splitlines()]
    prompt = task.doc_to_text(docs[0])
    assert prompt.startswith("The following are multiple choice questions (with answers) "
                             "about abstract algebra.\n\n")
    assert dev[0]["question"].strip() in prompt and dev[1]["question"].strip() in prompt
    assert dev[2]["question"].strip() not in prompt  # two shots
    assert prompt.endswith(first_test["question"].strip() + "\nA. " + first_test["choices"][0]
                           + "\nB. " + first_test["choices"][1] + "\nC. "
                           + first_test["choices"][2] + "\nD. " + first_test["choices"][3]
                           + "\nAnswer:")
    _, full = _docs("mmlu_full", task_manager)
    assert len(full) == 14042


@pytest.mark.heavy
def test_classification_metrics_through_compbench_eval(checkpoint, tmp_path, capsys):
    assert main(["eval", "--recipe", "fp32", "--tasks", "kasut_math,mmlu_subset", "--limit",
                 str(LIMIT), "--device", "cpu", "--output-dir", str(tmp_path)]) == 0
    [path] = list(tmp_path.glob("*.json"))
    json.loads(path.read_text())  # strict JSON: categories absent from the run are null
    record = read_record(path)
    kasut = {key: metric.value for key, metric in record.tasks["kasut_math"].metrics.items()}
    for key in ["acc", "f1_micro", "f1_macro", "f1_algebra", "f1_linear_algebra"]:
        assert 0.0 <= kasut[f"{key},none"] <= 1.0
    assert kasut["f1_micro,none"] == pytest.approx(kasut["acc,none"])  # single-label classes
    assert record.tasks["kasut_math"].headline == "f1_macro,none"  # from the task's YAML
    # lm-eval's directions and standard errors are kept: a mean's stderr is sqrt(p(1-p)/(n-1))
    acc = record.tasks["kasut_math"].metrics["acc,none"]
    assert acc.higher_is_better is True
    assert acc.stderr == pytest.approx((acc.value * (1 - acc.value) / (LIMIT - 1)) ** 0.5)
    mmlu = {key: metric.value for key, metric in record.tasks["mmlu_subset"].metrics.items()}
    assert 0.0 <= mmlu["acc,none"] <= 1.0
    assert mmlu["acc_stem,none"] == pytest.approx(mmlu["acc,none"])  # 8 abstract algebra docs
    assert mmlu["acc_humanities,none"] is None


def test_tasks_command_lists_every_task_with_local_rows(data_dir, capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task, rows in [("wikitext2_ppl", 4358), ("commonsense_qa", 1221), ("kasut_math", 10189),
                       ("mmlu_subset", 14042 + 285), ("sst2", 872), ("e_kar", 119)]:
        line = next(line for line in out.splitlines() if line.startswith(f"| {task} "))
        assert f"{rows} rows" in line, line
