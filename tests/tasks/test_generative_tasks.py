"""The generative tasks (GSM8K, MATH, MATH-500) on the real local data, scored through lm-eval
with a model whose answers are written by the test, so every expected number is known."""

import json
import math
from collections import Counter

import pytest
from lm_eval.api.model import LM


class WrittenAnswers(LM):
    """An lm-eval model that answers each generation request with `answer(doc)`."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.contexts: list[str] = []

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.contexts += [request.args[0] for request in requests]
        return [self.answer(request.doc) for request in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise AssertionError("a generative task asked for loglikelihoods")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise AssertionError("a generative task asked for rolling loglikelihoods")


@pytest.fixture(scope="module")
def manager(data_dir):
    from compbench.evaluation.task_manager import task_manager

    return task_manager((), ("gsm8k", "gsm8k_chat", "math", "math500", "math500_subset"))


def _run(manager, task: str, answer, limit: int):
    import lm_eval

    model = WrittenAnswers(answer)
    output = lm_eval.simple_evaluate(model=model, tasks=[task], limit=limit, task_manager=manager,
                                     log_samples=True, bootstrap_iters=0)
    return output, model


def _rows(data_dir, name: str) -> list[dict]:
    return [json.loads(line) for line in (data_dir / name).read_text().splitlines()]


def test_gsm8k_scores_both_of_lm_evals_filters(manager, data_dir):
    rows = _rows(data_dir, "gsm8k/test.jsonl")[:4]
    golds = [row["answer"].split("#### ")[-1] for row in rows]
    answers = [f"She makes {golds[0]}.\n#### {golds[0]}",  # both filters right
               f"So the answer is {golds[1]}.",  # no "####": flexible-extract only
               "#### 99999",  # both wrong
               f"#### {golds[3]}"]
    by_question = {row["question"]: text for row, text in zip(rows, answers, strict=True)}
    output, model = _run(manager, "gsm8k", lambda doc: by_question[doc["question"]], 4)
    result = output["results"]["gsm8k"]
    assert result["exact_match,strict-match"] == 0.5
    assert result["exact_match,flexible-extract"] == 0.75
    # lm-eval's prompt: five train examples, then the question
    first = model.contexts[0]
    assert first.count("Question: ") == 6 and first.endswith("Answer:")
    assert output["configs"]["gsm8k"]["generation_kwargs"]["until"][0] == "Question:"


def _final(answer: str) -> str:
    return f"Final Answer: The final answer is ${answer}$. I hope it is correct."


def test_math500_breaks_exact_match_down_by_level_and_subject(manager, data_dir):
    rows = _rows(data_dir, "math/test500.jsonl")[:20]
    by_problem = {row["problem"]: row for row in rows}

    def answer(doc):  # right on odd levels, wrong on even ones
        row = by_problem[doc["problem"]]
        return _final(row["answer"] if row["level"] % 2 else "\\text{no}")

    output, _ = _run(manager, "math500", answer, 20)
    result = output["results"]["math500"]
    right = [row["level"] % 2 == 1 for row in rows]
    assert result["exact_match,none"] == pytest.approx(sum(right) / len(rows))
    assert result["math_verify,none"] == pytest.approx(sum(right) / len(rows))
    levels = Counter(row["level"] for row in rows)
    for level in range(1, 6):
        value = result[f"exact_match_level_{level},none"]
        if levels[level]:
            assert value == (1.0 if level % 2 else 0.0)
        else:
            assert math.isnan(value)
    algebra = [r for r, row in zip(right, rows, strict=True) if row["subject"] == "Algebra"]
    assert result["exact_match_algebra,none"] == pytest.approx(sum(algebra) / len(algebra))
    assert result["math_verify_algebra,none"] == pytest.approx(sum(algebra) / len(algebra))
    for level in range(1, 6):  # math_verify reads the same answers here
        assert result[f"math_verify_level_{level},none"] == pytest.approx(
            result[f"exact_match_level_{level},none"], nan_ok=True)


def test_math_is_seven_subject_tasks_over_the_whole_test_split(manager, data_dir):
    from compbench.tasks.math_problems import SUBJECTS

    subjects = Counter(row["type"] for row in _rows(data_dir, "math/test.jsonl"))
    output, model = _run(manager, "math", lambda doc: _final(doc["answer"]), 2)
    assert set(output["results"]) == {"math", *(f"math_{key}" for key in SUBJECTS)}
    for key, subject in SUBJECTS.items():
        assert output["n-samples"][f"math_{key}"]["original"] == subjects[subject]
        samples = output["samples"][f"math_{key}"]
        assert all(s["doc"]["subject"] == subject for s in samples)
        assert output["results"][f"math_{key}"]["exact_match,none"] == 1.0
    assert output["results"]["math"]["exact_match,none"] == 1.0
    # minerva_math's prompt: four worked solutions, then the problem
    assert model.contexts[0].count("Problem:") == 5 and model.contexts[0].endswith("Solution:")


def test_math500_subset_takes_the_first_four_problems_of_each_subject(manager, data_dir):
    from compbench.tasks.math_problems import SUBJECTS

    rows = _rows(data_dir, "math/test500.jsonl")
    first = [row["problem"] for subject in SUBJECTS.values()
             for row in [r for r in rows if r["subject"] == subject][:4]]
    output, model = _run(manager, "math500_subset", lambda doc: _final(doc["answer"]), None)
    samples = output["samples"]["math500_subset"]
    assert sorted(s["doc"]["problem"] for s in samples) == sorted(first)  # 28, 4 a subject
    assert output["results"]["math500_subset"]["exact_match,none"] == 1.0
    result = output["results"]["math500_subset"]
    assert all(result[f"{check}_{key},none"] == 1.0 for key in SUBJECTS
               for check in ("exact_match", "math_verify"))


def test_gsm8k_chat_reads_the_final_answer_sentence(manager, data_dir):
    rows = _rows(data_dir, "gsm8k/test.jsonl")[:3]
    golds = [row["answer"].split("#### ")[-1] for row in rows]
    answers = [f"Step by step, {golds[0]} in all. The final answer is {golds[0]}",  # both filters
               f"The final answer is 99999. Or rather {golds[1]}",  # flexible-extract only
               "The final answer is 99999"]  # neither
    by_question = {row["question"]: text for row, text in zip(rows, answers, strict=True)}
    output, model = _run(manager, "gsm8k_chat", lambda doc: by_question[doc["question"]], 3)
    result = output["results"]["gsm8k_chat"]
    assert result["exact_match,strict-match"] == pytest.approx(1 / 3)
    assert result["exact_match,flexible-extract"] == pytest.approx(2 / 3)
    assert model.contexts[0].startswith("Given the following problem, reason and give a final answer")
    assert "Question:" not in model.contexts[0]  # zero-shot: the problem alone
