"""Generation on the real embedded model: batched greedy decoding timed and its samples kept."""

import json

import pytest

from compbench.compressors import parse_recipe
from compbench.evaluation.generation import FirstTokenClock, GenerationLog
from compbench.evaluation.settings import EvalSettings, chat_options, parse_gen_kwargs
from compbench.orchestration.plan import RunSpec, make_plan
from compbench.orchestration.runner import run_plan
from compbench.records.index import read_record


def test_the_log_counts_every_row_of_every_step():
    log = GenerationLog()
    for rows, steps, first, decode in ((2, 11, 0.5, 1.0), (1, 5, 0.3, 0.4)):
        clock = FirstTokenClock()
        clock.first_token = clock.started + first
        clock.ended = clock.first_token + decode
        log.add(rows=rows, prompt_tokens=100, steps=steps, clock=clock)
    summary = log.summary()
    assert summary["generated_tokens"] == 2 * 11 + 5
    assert summary["decode_tokens_per_s"] == pytest.approx((2 * 10 + 4) / 1.4)
    assert summary["prefill_tokens_per_s"] == pytest.approx(300 / 0.8)
    assert summary["time_to_first_token_s"] == pytest.approx(0.4)
    assert GenerationLog().summary() is None


@pytest.mark.heavy
def test_a_generative_run_records_its_generation_and_keeps_its_samples(checkpoint, tmp_path):
    """Also through the model's chat template, with the few-shot example as an earlier turn."""
    settings = EvalSettings(("gsm8k",), limit=2, num_fewshot=1, batch_size=2,
                            **chat_options(True, None, "Solve the problem."))
    plan = make_plan([RunSpec("smollm2-135m", parse_recipe("fp32"), settings, device="cpu")], tmp_path)
    assert not run_plan(plan, echo=lambda _: None)
    path = plan.runs[0].path
    record = read_record(path)
    generation = record.generation
    assert generation["batches"] == 1 and generation["rows"] == 2 and generation["max_batch_rows"] == 2
    assert 0 < generation["generated_tokens"] <= 2 * 256
    assert generation["decode_tokens_per_s"] > 0 and generation["time_to_first_token_s"] > 0
    task = generation["tasks"]["gsm8k"]
    assert task["generation_kwargs"]["max_gen_toks"] == 256 and task["num_fewshot"] == 1
    samples = [json.loads(line) for line in (path.parent / task["samples"]).read_text().splitlines()]
    # a line per problem and filter: the question, what the model wrote, how the filter scored it
    assert sorted((s["doc_id"], s["filter"]) for s in samples) == [
        (doc, name) for doc in (0, 1) for name in ("flexible-extract", "strict-match")]
    assert all(isinstance(s["resps"][0][0], str) and "exact_match" in s for s in samples)
    assert record.tasks["gsm8k"].headline == "exact_match,flexible-extract"
    assert record.settings["apply_chat_template"] is True and record.settings["fewshot_as_multiturn"]
    prompt = samples[0]["arguments"][0][0]  # the prompt, then the generation arguments
    assert prompt.startswith("<|im_start|>system\nSolve the problem.<|im_end|>\n<|im_start|>user\n")
    assert prompt.count("<|im_start|>user\nQuestion: ") == 2  # the example's turn, then the problem's
    assert prompt.count("<|im_start|>assistant\n") == 2 and prompt.endswith("<|im_start|>assistant\n")


def test_a_generation_override_reaches_lm_eval_and_is_recorded(checkpoint, tmp_path):
    """`--gen-kwargs max_gen_toks=4` caps the task's own 256 new tokens: the run's key, its
    generation block and the samples log all say 4, and no answer is longer."""
    settings = EvalSettings(("gsm8k",), limit=1, num_fewshot=0, gen_kwargs=parse_gen_kwargs("max_gen_toks=4"))
    plan = make_plan([RunSpec("smollm2-135m", parse_recipe("fp32"), settings, device="cpu")], tmp_path)
    assert not run_plan(plan, echo=lambda _: None)
    record = read_record(plan.runs[0].path)
    assert record.settings["gen_kwargs"] == {"max_gen_toks": 4}
    task = record.generation["tasks"]["gsm8k"]
    assert task["generation_kwargs"]["max_gen_toks"] == 4
    assert task["generation_kwargs"]["until"]  # the task's own stop sequences stay
    assert 0 < record.generation["generated_tokens"] <= 4
    sample = json.loads((plan.runs[0].path.parent / task["samples"]).read_text().splitlines()[0])
    assert sample["arguments"][0][1]["max_gen_toks"] == 4
