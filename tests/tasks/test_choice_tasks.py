"""Multiple-choice tasks on the real embedded model and the real local datasets."""

import json

import pytest
from sklearn.metrics import f1_score

from compbench.tasks.metrics import class_f1, f1_macro, f1_micro

# task -> (local file, row count from ../shared/data/SOURCES.md, field holding the question)
TASKS = {
    "commonsense_qa": ("commonsense_qa/validation.jsonl", 1221, "question"),
    "cosmos_qa": ("cosmos_qa/validation.jsonl", 2985, "question"),
    "logiqa": ("logiqa/test.jsonl", 651, "query"),
    "reclor": ("reclor/validation.jsonl", 500, "question"),
    "e_kar": ("e_kar/validation.jsonl", 119, "question"),
    "sst2": ("sst2/validation.jsonl", 872, "sentence"),
}
LIMIT = 6


@pytest.fixture(scope="module")
def task_manager(data_dir):
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    return TaskManager(include_path=str(TASKS_DIR))


@pytest.fixture(scope="module")
def results(checkpoint, task_manager):
    import lm_eval

    from compbench.evaluation.lm_model import CompressedLM

    lm = CompressedLM(pretrained="smollm2-135m", recipe="fp32", device="cpu")
    return lm_eval.simple_evaluate(model=lm, tasks=list(TASKS), limit=LIMIT,
                                   task_manager=task_manager, log_samples=True,
                                   bootstrap_iters=0)


@pytest.mark.parametrize("task", TASKS)
def test_task_reads_the_real_rows(task, task_manager, data_dir):
    from lm_eval.tasks import get_task_dict

    file, rows, field = TASKS[task]
    first = json.loads((data_dir / file).read_text().splitlines()[0])
    [loaded] = get_task_dict([task], task_manager).values()
    docs = list(loaded.eval_docs)
    assert len(docs) == rows
    assert first[field].strip() in loaded.doc_to_text(docs[0])


@pytest.mark.heavy
@pytest.mark.parametrize("task", TASKS)
def test_task_metrics_are_in_range(task, results):
    metrics = results["results"][task]
    assert results["n-samples"][task] == {"original": TASKS[task][1], "effective": LIMIT}
    for name in ("acc", "f1") + (() if task == "sst2" else ("acc_norm",)):
        assert 0.0 <= metrics[f"{name},none"] <= 1.0, name


@pytest.mark.heavy
@pytest.mark.parametrize("task", TASKS)
def test_metrics_follow_from_the_per_document_loglikelihoods(task, results, task_manager):
    """acc and F1 recomputed here from each document's choice loglikelihoods (the highest one
    is the prediction) and its gold label: the task's prompt, choices, target and aggregation
    are wired as the metrics claim."""
    from lm_eval.tasks import get_task_dict

    [loaded] = get_task_dict([task], task_manager).values()
    golds, preds = [], []
    for sample in results["samples"][task]:
        choices = loaded.doc_to_choice(sample["doc"])
        target = sample["target"]
        golds.append(target if isinstance(target, int) else choices.index(target))
        scores = [loglikelihood for loglikelihood, _ in sample["filtered_resps"]]
        assert len(scores) == len(choices)
        preds.append(max(range(len(scores)), key=scores.__getitem__))
    metrics = results["results"][task]
    correct = sum(g == p for g, p in zip(golds, preds, strict=True))
    assert metrics["acc,none"] == pytest.approx(correct / LIMIT)
    expected_f1 = f1_score(golds, preds, average="binary" if task == "sst2" else "macro",
                           zero_division=0)
    assert metrics["f1,none"] == pytest.approx(expected_f1)


def test_f1_macro_matches_sklearn():
    gold = [0, 1, 2, 2, 3, 1, 0, 2, 3, 3]
    pred = [0, 2, 2, 2, 3, 1, 1, 0, 3, 2]
    expected = f1_score(gold, pred, average="macro")
    assert f1_macro(zip(gold, pred, strict=True)) == pytest.approx(expected, abs=1e-12)
    assert f1_macro(zip(gold, pred, strict=True)) == pytest.approx(
        (1 / 2 + 1 / 2 + 4 / 7 + 4 / 5) / 4, abs=1e-12)  # per-class F1 worked by hand
    assert class_f1(2)(zip(gold, pred, strict=True)) == pytest.approx(4 / 7, abs=1e-12)
    assert f1_micro(zip(gold, pred, strict=True)) == pytest.approx(0.6, abs=1e-12)  # = accuracy


def test_groups_expand_to_their_tasks(task_manager):
    from lm_eval.tasks import get_task_dict

    def leaves(tree):
        names = set()
        for key, value in tree.items():
            names |= leaves(value) if isinstance(value, dict) else {getattr(key, "group_name", key)}
        return names

    reasoning = leaves(get_task_dict(["compbench_reasoning"], task_manager))
    assert reasoning == {"commonsense_qa", "cosmos_qa", "logiqa", "reclor", "e_kar"}
