"""wikitext2_chunked: the GPTQ perplexity protocol, checked against a direct implementation."""

import json
import math

import pytest
import torch

CHUNKS = 2


@pytest.fixture(scope="module")
def task_manager(data_dir, checkpoint):
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    return TaskManager(include_path=str(TASKS_DIR), metadata={"pretrained": "smollm2-135m"})


def _direct_perplexity(model, tokenizer, data_dir, chunks, seqlen=2048):
    """The protocol as the GPTQ repository writes it: exp(mean over chunks of the mean loss)."""
    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids
    assert ids.shape[1] // seqlen == 148  # 304,986 tokens
    losses = []
    for i in range(chunks):
        batch = ids[:, i * seqlen:(i + 1) * seqlen]
        with torch.no_grad():
            logits = model(batch).logits
        losses.append(torch.nn.functional.cross_entropy(logits[0, :-1].float(), batch[0, 1:]))
    return math.exp(torch.stack(losses).mean().item())


@pytest.mark.heavy
def test_chunked_matches_a_direct_implementation(task_manager, checkpoint, data_dir):
    import lm_eval

    from compbench.evaluation.lm_model import CompressedLM

    lm = CompressedLM(pretrained="smollm2-135m", recipe="fp32", device="cpu")
    results = lm_eval.simple_evaluate(model=lm, tasks=["wikitext2_chunked"], limit=CHUNKS,
                                      task_manager=task_manager, log_samples=False,
                                      bootstrap_iters=0)
    assert results["n-samples"]["wikitext2_chunked"] == {"original": 148, "effective": CHUNKS}
    ours = results["results"]["wikitext2_chunked"]["perplexity,none"]
    direct = _direct_perplexity(lm.model, lm.tokenizer, data_dir, CHUNKS)
    assert ours == pytest.approx(direct, rel=1e-4)
    assert 10 < ours < 60


@pytest.mark.heavy
def test_chunked_runs_through_lm_evals_registry_on_a_plain_folder(task_manager, checkpoint):
    """By name, as `lm_eval --model compressed` builds it, over a plain Hugging Face folder: the
    registered model serves the task's token-id request type (lm-eval's stock `hf` has none)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    results = lm_eval.simple_evaluate(
        model="compressed", model_args=f"pretrained={checkpoint},recipe=fp32,device=cpu",
        tasks=["wikitext2_chunked"], limit=1,
        task_manager=TaskManager(include_path=str(TASKS_DIR), metadata={"pretrained": str(checkpoint)}),
        log_samples=False, bootstrap_iters=0)
    assert math.isfinite(results["results"]["wikitext2_chunked"]["perplexity,none"])


def test_chunked_without_a_tokenizer_says_how_to_pass_one(data_dir):
    from compbench.errors import CompbenchError
    from compbench.tasks.chunked import load_chunks

    with pytest.raises(CompbenchError, match="--metadata"):
        load_chunks("Salesforce/wikitext", "wikitext-2-raw-v1", ["test"])


def _wikitext(data_dir, rows=300):
    lines = (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()[:rows]
    return "\n\n".join(json.loads(line)["text"] for line in lines)


@pytest.mark.heavy
def test_a_model_that_expects_bos_gets_it_at_the_start_of_every_chunk(data_dir, checkpoint):
    """Gemma's tokenizer adds BOS: each chunk is BOS and the next seqlen - 1 text tokens, so the
    text is scored once, in order, with the same number of predicted tokens a chunk. SmolLM2's
    adds none: its chunks are the joined text's tokens, as the GPTQ papers cut them."""
    from transformers import AutoTokenizer

    from compbench.model_zoo.embedded import materialize_embedded
    from compbench.tasks.chunked import _chunks

    text = _wikitext(data_dir)
    gemma = str(materialize_embedded("gemma3-270m"))
    chunks = _chunks(text, gemma, 256)
    text_ids = AutoTokenizer.from_pretrained(gemma)(text, add_special_tokens=False).input_ids
    assert len(chunks) == len(text_ids) // 255 >= 10
    assert all(len(chunk) == 256 and chunk[0] == 2 and 2 not in chunk[1:] for chunk in chunks)
    assert [t for chunk in chunks for t in chunk[1:]] == text_ids[:len(chunks) * 255]
    plain = _chunks(text, str(checkpoint), 256)
    smollm_ids = AutoTokenizer.from_pretrained(checkpoint)(text).input_ids
    assert [t for chunk in plain for t in chunk] == smollm_ids[:len(plain) * 256]
