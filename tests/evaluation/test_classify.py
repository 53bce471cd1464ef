"""Scoring a sequence classifier (evaluation/classify.py) through `compbench eval`: the numbers
equal an independent plain-transformers pass over the same held-out rows."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compbench.cli.main import main
from compbench.records.index import load_results


@pytest.mark.heavy
def test_a_minilm_classifier_is_scored_on_its_held_out_rows(minilm_classifier, data_dir, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--model", str(minilm_classifier), "--recipe", "fp32", "--recipe",
                 "dynamic-int8", "--tasks", "sst2", "--limit", "40", "--batch-size", "16",
                 "--device", "cpu", "--output-dir", str(out)]) == 0
    records = {r.recipe: r for r in load_results(out)}
    fp32 = records["fp32"].tasks["sst2"]
    assert fp32.version == "compbench-classifier-1" and fp32.protocol["scorer"] == "compbench-classifier"
    assert (fp32.n_effective, fp32.n_original) == (40, 872)
    # independently: the first 40 validation sentences through plain transformers
    rows = [json.loads(line) for line in (data_dir / "sst2" / "validation.jsonl").open()][:40]
    model = AutoModelForSequenceClassification.from_pretrained(minilm_classifier).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_classifier)
    with torch.no_grad():
        logits = torch.cat([model(**tokenizer([r["sentence"].strip() for r in rows[i:i + 8]], padding=True,
                                              return_tensors="pt")).logits for i in range(0, 40, 8)])
    accuracy = (logits.argmax(-1) == torch.tensor([r["label"] for r in rows])).sum().item() / 40
    assert fp32.metrics["acc,none"].value == pytest.approx(accuracy, abs=1e-9)
    quantized = records["dynamic-int8"]
    assert quantized.compression.size_bytes < 0.7 * records["fp32"].compression.size_bytes
    assert quantized.timing.eval_samples_per_s > 0 and quantized.timing.latency_ms_per_batch > 0


def test_a_classifier_given_a_language_task_is_one_line(minilm_classifier, tmp_path, capsys):
    code = main(["eval", "--model", str(minilm_classifier), "--recipe", "fp32", "--tasks", "wikitext2_ppl",
                 "--device", "cpu", "--output-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("compbench: error: minilm-sst2 is a sequence classifier: it is scored on the held-out "
                   "rows of a classification dataset (kasut_math, sst2, commonsense_qa), not on "
                   "wikitext2_ppl")


@pytest.mark.parametrize("recipe, message", [
    ("mixed:5", "sensitivity (and mixed, which uses it) scores layers by the next-token perplexity "
                "of calibration text; BertForSequenceClassification has no language-model head"),
    ("structured:heads=0.25:nsamples=1:seqlen=32+int8",
     "int8 reloads the model with from_pretrained, which cannot rebuild the encoder heads removed"),
])
def test_recipes_that_do_not_fit_an_encoder_classifier_are_one_line(minilm_classifier, tmp_path, capsys,
                                                                     data_dir, recipe, message):
    code = main(["eval", "--model", str(minilm_classifier), "--recipe", recipe, "--tasks", "sst2",
                 "--limit", "8", "--device", "cpu", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"compbench: error: {message}" in err, err
