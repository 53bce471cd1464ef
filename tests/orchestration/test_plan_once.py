"""One command, one plan: each recipe parsed once, the plan built once, each artifact identified
once and lm-eval's task manager built once, then handed down to the run that uses them."""

from collections import Counter

import pytest

from compbench.cli.main import main
from compbench.orchestration.executors import call_safely


class InProcess:
    """An executor that runs each job in this process, so that what it builds is counted here
    (the local executor spawns a process per run)."""

    def run(self, jobs):
        for key, function, args in jobs:
            yield key, call_safely(function, *args)


@pytest.fixture
def counts(monkeypatch):
    """Calls of parse_recipe, make_plan, artifact_identity and TaskManager() while a command runs."""
    import lm_eval.tasks

    import compbench.artifacts.build
    import compbench.artifacts.identity
    import compbench.cli.common
    import compbench.compressors
    import compbench.orchestration.plan
    from compbench.evaluation.task_manager import task_manager

    seen = Counter()

    def counted(name, function):
        def wrapper(*args, **kwargs):
            seen[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(compbench.compressors, "parse_recipe",
                        counted("parse_recipe", compbench.compressors.parse_recipe))
    monkeypatch.setattr(compbench.orchestration.plan, "make_plan",
                        counted("make_plan", compbench.orchestration.plan.make_plan))
    identity = counted("artifact_identity", compbench.artifacts.identity.artifact_identity)
    monkeypatch.setattr(compbench.artifacts.identity, "artifact_identity", identity)
    monkeypatch.setattr(compbench.artifacts.build, "artifact_identity", identity)
    stock = lm_eval.tasks.TaskManager

    class CountedTaskManager(stock):
        def __init__(self, *args, **kwargs):
            seen["TaskManager"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", CountedTaskManager)
    monkeypatch.setattr(compbench.cli.common, "executor_from", lambda args: InProcess())
    task_manager.cache_clear()
    yield seen
    task_manager.cache_clear()


@pytest.mark.heavy
def test_eval_parses_plans_and_identifies_each_thing_once(counts, checkpoint, data_dir, tmp_path):
    code = main(["eval", "--recipe", "fp32", "--recipe", "magnitude:0.3", "--tasks", "commonsense_qa",
                 "--limit", "2", "--device", "cpu", "--no-store", "--output-dir", str(tmp_path)])
    assert code == 0
    assert counts == {"parse_recipe": 2, "make_plan": 1, "artifact_identity": 2, "TaskManager": 1}
    assert len(list(tmp_path.glob("*.json"))) == 2



def test_a_templated_sweep_reads_the_models_chat_template_once(monkeypatch, checkpoint, data_dir, tmp_path):
    """Planning checks each run's template against the model's tokenizer, loaded once a model."""
    import transformers

    from compbench.evaluation.lm_model import _chat_templates
    from compbench.orchestration.plan import make_plan
    from compbench.orchestration.sweep import load_sweep

    loads = Counter()
    stock = transformers.AutoTokenizer.from_pretrained

    def counted(*args, **kwargs):
        loads["tokenizer"] += 1
        return stock(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", counted)
    _chat_templates.cache_clear()
    sweep = tmp_path / "templated.yaml"
    sweep.write_text("name: templated\nmodels: [smollm2-135m]\nrecipes: [fp32, bf16, 'magnitude:0.3']\n"
                     "tasks: [gsm8k_chat]\nlimit: 1\napply_chat_template: true\n")
    plan = make_plan(list(load_sweep(sweep).specs), tmp_path / "out")
    assert len(plan.runs) == 3 and loads == {"tokenizer": 1}
    _chat_templates.cache_clear()
