"""Shared-context scoring gives HFLM's own numbers, request by request, on real tasks: the same
greedy flags and the same log-probabilities to float32 rounding. That rounding is relative:
HFLM's own scores of these tasks move by up to 1.5e-6 of |log p| (5e-5 nats on a 36-nat answer)
between batch sizes 1 and 16, so the bound is 1e-5 + 3e-6 * |log p|."""

import pytest

from compbench.evaluation.shared_context import batches, split_shared

CHOICE_TASKS = ["cosmos_qa", "logiqa", "reclor", "e_kar", "kasut_math", "commonsense_qa", "mmlu_subset"]


def test_requests_are_grouped_by_context_and_the_rest_left_to_hflm():
    requests = [(None, [1, 2], [3]), (None, [1, 2], [4, 5]), (None, [9], [3]),
                (None, [7, 7, 7], [1, 2]), (None, [7, 7, 7], [1])]
    assert split_shared(requests, max_length=8) == ([[0, 1], [3, 4]], [2])
    # context + longest answer beyond the window: HFLM truncates per request, so it scores them
    assert split_shared(requests, max_length=3) == ([[0, 1]], [2, 3, 4])


def test_groups_are_batched_longest_context_first():
    requests = [(None, [1], [3]), (None, [1], [4]), (None, [2, 2, 2], [3]), (None, [2, 2, 2], [4]),
                (None, [5, 5], [1]), (None, [5, 5], [2]), (None, [5, 5], [3])]
    groups = [[0, 1], [2, 3], [4, 5, 6]]
    assert batches(groups, requests, batch_size=2) == [[[2, 3], [4, 5, 6]], [[0, 1]]]
    assert batches(groups, requests, batch_size=1) == [[[2, 3]], [[4, 5, 6]], [[0, 1]]]


def _scores(lm, task, limit: int, shared: bool):
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    requests = [i for i in task.instances if i.request_type == "loglikelihood"]
    lm.shared_context = shared
    return lm.loglikelihood(requests, disable_tqdm=True)


def _assert_same(shared, plain, where: str):
    assert len(shared) == len(plain) > 0, where
    for i, ((logp, greedy), (expected, expected_greedy)) in enumerate(zip(shared, plain, strict=True)):
        assert abs(logp - expected) <= 1e-5 + 3e-6 * abs(expected), (where, i, logp, expected)
        assert greedy == expected_greedy, (where, i)


@pytest.fixture(scope="module")
def tasks(data_dir):
    from lm_eval.tasks import get_task_dict

    from compbench.evaluation.task_manager import task_manager

    return get_task_dict(CHOICE_TASKS, task_manager(tasks=tuple(CHOICE_TASKS)))


@pytest.mark.heavy
def test_every_multiple_choice_task_scores_as_hflm_does(tasks, checkpoint):
    from compbench.artifacts.build import build
    from compbench.evaluation.lm_model import CompressedLM

    # 3 documents and 4 contexts a batch: questions of different lengths share a (left-padded) pass
    lm = CompressedLM(artifact=build("smollm2-135m", "fp32", device="cpu"), batch_size=4)
    for name in CHOICE_TASKS:
        _assert_same(_scores(lm, tasks[name], 3, True), _scores(lm, tasks[name], 3, False), name)


@pytest.mark.heavy
def test_a_packed_gptq_style_model_scores_as_hflm_does(tasks, checkpoint):
    from compbench.artifacts.build import build
    from compbench.evaluation.lm_model import CompressedLM

    lm = CompressedLM(artifact=build("smollm2-135m", "rtn:4", device="cpu"), batch_size=4)
    for name in ("cosmos_qa", "commonsense_qa"):
        _assert_same(_scores(lm, tasks[name], 2, True), _scores(lm, tasks[name], 2, False), name)


@pytest.mark.heavy
def test_a_bitsandbytes_model_is_scored_by_hflms_own_path(tasks, checkpoint):
    """bitsandbytes' CPU kernel makes a row's result depend on its batch (see shared_context)."""
    from compbench.artifacts.build import build
    from compbench.evaluation.lm_model import CompressedLM
    from compbench.evaluation.shared_context import rows_independent

    lm = CompressedLM(artifact=build("smollm2-135m", "nf4", device="cpu"), batch_size=4)
    assert not rows_independent(lm.model)
    assert _scores(lm, tasks["cosmos_qa"], 2, True) == _scores(lm, tasks["cosmos_qa"], 2, False)
