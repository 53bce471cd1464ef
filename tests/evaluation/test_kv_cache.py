"""The quantized KV cache: what it holds at a long prompt, and a generative run that uses it."""

import pytest
import torch

from compbench.compressors import parse_recipe
from compbench.errors import CompbenchError
from compbench.evaluation.kv_cache import check_kv_cache, prefill_cache_mb
from compbench.evaluation.settings import EvalSettings, parse_gen_kwargs
from compbench.orchestration.plan import RunSpec, make_plan
from compbench.orchestration.runner import run_plan
from compbench.records.index import read_record


def test_an_unknown_kind_is_one_clear_error():
    with pytest.raises(CompbenchError, match="int3: not a cache kind; use one of int8, int4, int2"):
        check_kv_cache("int3")


def test_the_quantized_cache_holds_a_fraction_of_the_dense_one(fp32_model, gptq_chunks):
    """SmolLM2: 30 layers x (keys + values) x 3 KV heads x 64 x 4 bytes = 45 MB per 1024 tokens
    in fp32; int4 stores 4 bits and a scale and zero per group (and 128 newest tokens float)."""
    prompt = gptq_chunks[:1, :1024]
    dense = prefill_cache_mb(fp32_model, prompt, None)
    assert dense == pytest.approx(30 * 2 * 3 * 64 * 1024 * 4 / 2**20)
    sizes = {kind: prefill_cache_mb(fp32_model, prompt, kind) for kind in ("int8", "int4", "int2")}
    assert sizes["int2"] < sizes["int4"] < sizes["int8"] < 0.3 * dense
    assert sizes["int4"] < 0.2 * dense


def test_a_cache_on_a_task_that_does_not_generate_is_refused(tmp_path):
    settings = EvalSettings(("wikitext2_chunked",), limit=1, kv_cache="int4")
    with pytest.raises(CompbenchError, match="none of wikitext2_chunked generates text"):
        make_plan([RunSpec("smollm2-135m", parse_recipe("fp32"), settings, device="cpu")], tmp_path)


@pytest.mark.heavy
def test_a_generative_run_with_a_quantized_cache_records_it(checkpoint, tmp_path):
    settings = EvalSettings(("gsm8k",), limit=1, num_fewshot=0, kv_cache="int4",
                            gen_kwargs=parse_gen_kwargs("max_gen_toks=8"))
    plan = make_plan([RunSpec("smollm2-135m", parse_recipe("fp32"), settings, device="cpu")], tmp_path)
    dense = make_plan([RunSpec("smollm2-135m", parse_recipe("fp32"), EvalSettings(
        ("gsm8k",), limit=1, num_fewshot=0, gen_kwargs=settings.gen_kwargs), device="cpu")], tmp_path)
    assert plan.runs[0].path != dense.runs[0].path  # the cache is part of the run's identity
    assert not run_plan(plan, echo=lambda _: None)
    record = read_record(plan.runs[0].path)
    assert record.settings["kv_cache"] == "int4"
    cache = record.generation["kv_cache"]
    assert cache["kind"] == "int4" and cache["prompt_tokens"] == 2048
    assert cache["dense_mb"] == pytest.approx(30 * 2 * 3 * 64 * 2048 * 4 / 2**20)
    assert 0.75 < cache["saved_fraction"] < 1
    assert 0 < record.generation["generated_tokens"] <= 8


def test_generate_with_the_quantized_cache_stays_close_to_dense(fp32_model, gptq_chunks):
    """int8 keys and values: the greedy continuation of a 256-token prompt barely moves."""
    from compbench.evaluation.kv_cache import quantized_cache

    prompt = gptq_chunks[:1, :256]
    with torch.no_grad():
        dense = fp32_model.generate(prompt, max_new_tokens=6, do_sample=False)
        quantized = fp32_model.generate(prompt, max_new_tokens=6, do_sample=False,
                                        past_key_values=quantized_cache(fp32_model, "int8"))
    assert (dense[0, 256:] == quantized[0, 256:]).float().mean() >= 0.5
