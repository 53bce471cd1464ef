"""Rolling perplexity for a model that expects BOS: every window starts with it (the model's
tokenizer adds one), each text token is scored once; lm-eval's HFLM would score the BOS as text
and start later windows without one."""

import json

import pytest
import torch
from lm_eval.api.instance import Instance


@pytest.mark.heavy
def test_every_rolling_window_starts_with_bos(data_dir):
    from compbench.artifacts.build import build
    from compbench.evaluation.lm_model import CompressedLM

    lines = (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()[:8]
    page = "".join(json.loads(line)["text"] for line in lines)
    lm = CompressedLM(artifact=build("gemma3-270m", "fp32", device="cpu"), max_length=64)
    tokens = lm.tokenizer(page, add_special_tokens=False).input_ids
    assert len(tokens) > 3 * 63
    (total,) = lm.loglikelihood_rolling(
        [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(page,), idx=0)])
    expected = 0.0
    for start in range(0, len(tokens), 63):
        window = [lm.tokenizer.bos_token_id, *tokens[start:start + 63]]
        with torch.no_grad():
            logits = lm.model(torch.tensor([window])).logits[0, :-1].float()
        expected += float(torch.log_softmax(logits, -1).gather(1, torch.tensor(window[1:])[:, None]).sum())
    assert total == pytest.approx(expected, rel=1e-5)
