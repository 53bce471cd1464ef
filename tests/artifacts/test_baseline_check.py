"""The baseline check: an uncompressed model far above a credible perplexity is flagged in the
run, in every results record of it and at the top of the report, and the gate refuses it."""

import json
import os
import subprocess
import sys

import pytest
import torch

from compbench.artifacts.baseline_check import perplexity_bound
from compbench.cli.main import main


@pytest.fixture(scope="module")
def broken_folder(tmp_path_factory, checkpoint):
    """The embedded model with its first decoder layer's weights zeroed, saved as a plain folder."""
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    model, tokenizer = load_model(get_preset("smollm2-135m"), device="cpu")
    with torch.no_grad():
        for parameter in model.model.layers[0].parameters():
            parameter.zero_()
    folder = tmp_path_factory.mktemp("broken") / "smollm2-layer0-zeroed"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _first_tokens_perplexity(data_dir, tokens: int) -> tuple[float, int]:
    """Written here without compbench's code: the embedded SmolLM2 checkpoint loaded with plain
    transformers, the WikiText-2 test rows joined with blank lines, exp(mean NLL) of the first
    `tokens` tokens (SmolLM2's tokenizer adds no BOS), and its parameters counted once each."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compbench.model_zoo import get_preset
    from compbench.model_zoo.sources import resolve_source

    folder = resolve_source(get_preset("smollm2-135m"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[:, :tokens]
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return float(torch.exp(loss)), params


def test_the_embedded_model_passes_with_the_perplexity_measured_independently(sweep, data_dir):
    _, records, _ = sweep
    perplexity, params = _first_tokens_perplexity(data_dir, 1024)
    for record in records.values():
        check = record.baseline_check
        assert check["tokens"] == 1024 and not check["bos"]
        assert check["perplexity"] == pytest.approx(perplexity, rel=1e-4)
        assert check["params"] == params
        assert check["passed"] and check["perplexity"] <= check["bound"]
        assert record.baseline_warning is None


def test_the_bound_is_a_generous_multiple_of_a_credible_models_perplexity(data_dir):
    """The bound for the embedded model's size sits well above its measured perplexity (so a
    sound model passes) and well below a broken one's (see the test below: over 1000)."""
    perplexity, params = _first_tokens_perplexity(data_dir, 1024)
    assert 2 * perplexity < perplexity_bound(params) < 1000
    assert perplexity_bound(params // 10) > perplexity_bound(params)  # smaller models: looser


def _gate(baseline, results, *extra):
    try:
        return main(["gate", "--baseline", str(baseline), "--results", str(results), *extra])
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.heavy
def test_a_broken_baseline_is_flagged_reported_and_refused(broken_folder, tmp_path, capsys):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.cli.main", "eval", "--model", str(broken_folder),
         "--recipe", "fp32", "--recipe", "magnitude:0.1", "--tasks", "wikitext2_chunked", "--limit", "1",
         "--device", "cpu", "--no-store", "--output-dir", str(results)],
        capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = "the uncompressed smollm2-layer0-zeroed failed the baseline check"
    assert proc.stdout.count(f"WARNING: {warning}") == 2  # once under each run's line
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert len(records) == 2
    for record in records:
        check = record["baseline_check"]
        assert not check["passed"] and check["perplexity"] > 1000 and check["bound"] == 100

    report = tmp_path / "report.md"
    assert main(["report", str(results), "--output", str(report), "--no-plots"]) == 0
    text = report.read_text()
    assert text.startswith(f"# compbench report\n\n> **WARNING: broken baseline.** {warning}")
    assert text.count("broken baseline") == 1

    baseline = tmp_path / "baseline.yaml"
    assert _gate(baseline, results, "--update") == 0
    capsys.readouterr()
    assert _gate(baseline, results) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compbench: error: gate: refusing to gate against a broken baseline: "
                          f"{warning}") and len(err.splitlines()) == 1

    # a compressed run that carries no check (loaded from a store) against the recorded
    # uncompressed run: the check the baseline file kept for it is enough to refuse
    fp32 = next(results.glob("smollm2-layer0-zeroed__fp32__*.json"))
    fp32.unlink()
    pruned = next(results.glob("*magnitude*.json"))
    data = json.loads(pruned.read_text())
    data["baseline_check"] = None
    pruned.write_text(json.dumps(data))
    assert _gate(baseline, results) == 2
    assert "refusing to gate against a broken baseline" in capsys.readouterr().err
