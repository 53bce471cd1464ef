"""The tokenization cache gives lm-eval's own token ids, is used on the second pass, and is keyed
by the request strings and the tokenizer."""

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM

from compbench.evaluation import token_cache


@pytest.fixture(scope="module")
def lm(checkpoint):
    from compbench.artifacts.build import build
    from compbench.evaluation.lm_model import CompressedLM

    return CompressedLM(artifact=build("smollm2-135m", "fp32", device="cpu"))


@pytest.fixture
def requests(data_dir):
    from lm_eval.tasks import get_task_dict

    from compbench.evaluation.task_manager import task_manager

    task = get_task_dict(["cosmos_qa"], task_manager(tasks=("cosmos_qa",)))["cosmos_qa"]
    task.build_all_requests(limit=3, rank=0, world_size=1)
    empty_context = Instance("loglikelihood", {}, ("", " The end."), 0)
    return [*task.instances, empty_context]


def _lm_eval_tokens(lm, requests):
    """What lm-eval's own `TemplateLM.loglikelihood` hands to the scorer."""
    seen = []
    original = lm._loglikelihood_tokens
    lm._loglikelihood_tokens = lambda reqs, disable_tqdm=False: seen.extend(reqs) or []
    try:
        TemplateLM.loglikelihood(lm, requests, disable_tqdm=True)
    finally:
        lm._loglikelihood_tokens = original
    return [(context, continuation) for _, context, continuation in seen]


def test_cached_ids_are_lm_evals_and_the_second_pass_reads_them(lm, requests, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path))
    pairs = [tuple(r.args) for r in requests]
    calls = []

    def encode():
        calls.append(1)
        return [lm._encode(*pair) for pair in pairs]

    first = token_cache.cached_encodings(lm, pairs, encode)
    assert [tuple(p) for p in first] == _lm_eval_tokens(lm, requests)
    assert token_cache.cached_encodings(lm, pairs, encode) == first and len(calls) == 1
    # another request string is another entry
    assert token_cache.cache_path(lm, pairs[:-1]) != token_cache.cache_path(lm, pairs)
    # a damaged entry is tokenized again
    token_cache.cache_path(lm, pairs).write_text("{not json")
    assert token_cache.cached_encodings(lm, pairs, encode) == first and len(calls) == 2


def test_another_tokenizer_setting_is_another_key(lm, requests, monkeypatch):
    pairs = [tuple(r.args) for r in requests]
    before = token_cache.cache_path(lm, pairs)
    monkeypatch.setattr(lm, "add_bos_token", not lm.add_bos_token)
    assert token_cache.cache_path(lm, pairs) != before


@pytest.mark.heavy
def test_scores_through_the_cache_are_the_scores_without_it(lm, requests, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path))
    lm.shared_context = False
    cold = lm.loglikelihood(requests, disable_tqdm=True)
    assert list((tmp_path / "tokens").glob("*.json"))
    assert lm.loglikelihood(requests, disable_tqdm=True) == cold
    from lm_eval.models.huggingface import HFLM

    assert HFLM.loglikelihood(lm, requests, disable_tqdm=True) == cold
