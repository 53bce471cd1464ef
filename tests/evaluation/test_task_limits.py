"""Per-task document limits (`--limit TASK=N`, a sweep's `limit: {TASK: N}`): each named task
scores its first N documents, as a global limit of N would, and the others their own count."""

import pytest

from compbench.cli.main import main
from compbench.evaluation.evaluate import _document_samples
from compbench.evaluation.settings import EvalSettings
from compbench.evaluation.task_manager import task_manager
from compbench.records.index import load_results


def test_a_group_limit_takes_the_first_documents_of_each_of_its_tasks(data_dir):
    tasks = ("compbench_reasoning", "commonsense_qa")
    settings = EvalSettings(tasks, task_limits=(("commonsense_qa", 0.001), ("compbench_reasoning", 2)))
    samples = _document_samples(settings, task_manager((), tasks))
    assert set(samples) == {"commonsense_qa", "cosmos_qa", "logiqa", "reclor", "e_kar"}
    assert all(indices == [0, 1] for indices in samples.values())  # 0.001 of 1,221 questions: 2


@pytest.mark.heavy
def test_per_task_limits_score_each_tasks_first_documents(tmp_path, data_dir, capsys):
    common = ["eval", "--recipe", "fp32", "--tasks", "wikitext2_chunked,commonsense_qa", "--device", "cpu",
              "--no-store"]
    assert main([*common, "--limit", "commonsense_qa=3,wikitext2_chunked=1",
                 "--output-dir", str(tmp_path / "per_task")]) == 0
    assert main([*common, "--limit", "1", "--output-dir", str(tmp_path / "global")]) == 0
    (per_task,) = load_results(tmp_path / "per_task")
    (global_,) = load_results(tmp_path / "global")
    assert per_task.limit == "commonsense_qa=3,wikitext2_chunked=1" and global_.limit == 1
    counts = {name: result.n_effective for name, result in per_task.tasks.items()}
    assert counts == {"wikitext2_chunked": 1, "commonsense_qa": 3}
    assert global_.tasks["commonsense_qa"].n_effective == 1
    ppl = "perplexity,none"
    assert (per_task.metric("wikitext2_chunked", ppl).value
            == pytest.approx(global_.metric("wikitext2_chunked", ppl).value, rel=1e-6))
    assert per_task.run_key != global_.run_key
