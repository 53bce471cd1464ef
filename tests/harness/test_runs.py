"""End to end on the real model and real wikitext: perplexity ordering, lm-eval CLI parity,
export to a stock checkpoint, measurements, resume."""

import json
import logging
import os
import subprocess
import sys

import pytest

from compbench.harness.runner import in_fresh_process, run_sweep
from compbench.model_zoo.presets import get_preset


def word_ppl(result):
    return result["eval"]["tasks"]["wikitext2_ppl"]["word_perplexity,none"]


def chunked_ppl(result):
    return result["eval"]["tasks"]["wikitext2_chunked"]["perplexity,none"]


@pytest.mark.parametrize("metric", [word_ppl, chunked_ppl])
def test_perplexity_moves_the_right_way(sweep, metric):
    _, runs, _ = sweep
    ppl = {recipe: metric(result) for recipe, result in runs.items()}
    assert 5 < ppl["fp32"] < 60  # a working 135M model on wikitext
    assert abs(ppl["int8"] / ppl["fp32"] - 1) < 0.03  # LLM.int8() is near-lossless
    assert max(ppl["fp32"], ppl["int8"]) < ppl["nf4"] < ppl["fp4"]
    assert ppl["fp32"] < ppl["magnitude:0.25"]
    assert ppl["magnitude:0.5"] > 3 * ppl["magnitude:0.25"]  # 50% magnitude pruning breaks it
    wanda = ppl["wanda:0.5:nsamples=4:seqlen=256"]
    assert ppl["fp32"] < wanda < ppl["magnitude:0.5"] / 3  # activation-aware pruning holds up
    assert ppl["fp32"] < ppl["rtn:4"] < ppl["magnitude:0.5"]


def test_runs_record_their_perplexity_protocols(sweep):
    _, runs, _ = sweep
    protocols = runs["fp32"]["eval"]["protocols"]
    assert protocols["wikitext2_ppl"]["window_tokens"] == 2048
    assert protocols["wikitext2_chunked"]["seqlen"] == 2048
    assert protocols["wikitext2_ppl"]["normalized_by"] != protocols["wikitext2_chunked"]["normalized_by"]


def test_runs_record_true_sizes_and_measurements(sweep):
    _, runs, _ = sweep
    fp32 = runs["fp32"]["compression"]
    assert fp32["compression_ratio"] == 1.0
    assert runs["nf4"]["compression"]["size_bytes"] < runs["int8"]["compression"]["size_bytes"]
    assert runs["int8"]["compression"]["size_bytes"] < fp32["size_bytes"]
    # pruning keeps dense storage; it shows in the non-zero count instead
    pruned = runs["magnitude:0.5"]["compression"]
    assert pruned["size_bytes"] == fp32["size_bytes"]
    target_zeros = pruned["steps"][0]["stats"]["sparsity"] * pruned["steps"][0]["stats"]["target_params"]
    assert fp32["params_nonzero"] - pruned["params_nonzero"] == pytest.approx(target_zeros, rel=0.01)
    packed = runs["rtn:4"]["compression"]
    assert packed["size_bytes"] < 0.35 * fp32["size_bytes"]
    assert packed["checkpoint_bytes"] < 0.35 * fp32["checkpoint_bytes"]
    assert fp32["baseline_16bit_bytes"] == fp32["size_bytes"] // 2
    assert packed["compression_ratio_vs_16bit"] == pytest.approx(
        fp32["baseline_16bit_bytes"] / packed["size_bytes"])
    for result in runs.values():
        timing = result["timing"]
        assert timing["prefill_tokens"] == 128 and timing["prefill_tokens_per_s"] > 0
        assert timing["generate_tokens"] == 16
        assert timing["generate_tokens_per_s"] is None or timing["generate_tokens_per_s"] > 0
        assert timing["eval_tokens"] >= 6756 + 2 * 2048 and timing["eval_tokens_per_s"] > 0
        assert timing["peak_rss_mb"] > 300
        assert result["eval"]["n_samples"]["wikitext2_ppl"] == {"original": 62, "effective": 2}
        assert result["eval"]["n_samples"]["wikitext2_chunked"] == {"original": 148, "effective": 2}
        assert result["env"]["versions"]["lm_eval"] == "0.4.13"


def test_calibrated_runs_record_their_calibration_time_and_memory(sweep):
    _, runs, _ = sweep
    wanda = runs["wanda:0.5:nsamples=4:seqlen=256"]
    assert wanda["calibration"] == {"dataset": "wikitext2", "nsamples": 4, "seqlen": 256, "seed": 0}
    assert runs["fp32"]["calibration"] is None
    step = wanda["compression"]["steps"][0]
    assert step["seconds"] > 0 and step["peak_rss_mb"] > 300
    assert step["stats"]["sparsity"] == pytest.approx(0.5, abs=0.001)


def test_rerun_skips_finished_runs_and_redoes_failed_ones(sweep):
    out, runs, spec = sweep
    fp32_file = out / spec("fp32").file_name()
    before = fp32_file.read_bytes()
    broken = spec("int8")
    (out / broken.file_name()).write_text(json.dumps(
        {"schema_version": 1, "status": "error", "error": "killed", "run": broken.key()}))
    messages = []
    assert run_sweep([spec("fp32"), spec("int8")], out, echo=messages.append) == []
    assert "skipping" in messages[0] and "running" in messages[1]
    assert fp32_file.read_bytes() == before
    redone = json.loads((out / broken.file_name()).read_text())
    assert redone["status"] == "ok"
    assert word_ppl(redone) == pytest.approx(word_ppl(runs["int8"]), rel=1e-6)
    # measured in a fresh process: not inflated by the sweep and the tests run since
    assert redone["timing"]["peak_rss_mb"] == pytest.approx(runs["int8"]["timing"]["peak_rss_mb"],
                                                            rel=0.1)


def test_fresh_process_reports_every_outcome_and_survives_a_killed_run():
    outcome, pid = in_fresh_process(os.getpid)
    assert outcome == "ok" and pid != os.getpid()
    outcome, message = in_fresh_process(get_preset, "no-such-model")
    assert outcome == "bad_input" and message.startswith("unknown model preset 'no-such-model'")
    outcome, (message, trace) = in_fresh_process(json.loads, "{")
    assert outcome == "crashed" and message.startswith("JSONDecodeError: Expecting property name")
    assert "json/decoder.py" in trace
    outcome, (message, _) = in_fresh_process(os._exit, 9)
    assert outcome == "crashed" and "died without a result" in message


def test_fresh_process_keeps_the_log_levels_set_here():
    logger = logging.getLogger("compbench.test-quiet")
    logger.setLevel(logging.ERROR)  # as the CLI quiets libraries before a sweep
    try:
        assert in_fresh_process(logger.getEffectiveLevel) == ("ok", logging.ERROR)
    finally:
        logger.setLevel(logging.NOTSET)


def _compbench(*args, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "compbench.harness.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_lm_eval_cli_matches_compbench_eval(sweep, tmp_path):
    _, runs, _ = sweep
    proc = _compbench("lm-eval", "--model", "compressed", "--model_args",
                      "pretrained=smollm2-135m,recipe=magnitude:0.25,device=cpu",
                      "--tasks", "wikitext2_ppl,wikitext2_chunked", "--limit", "2",
                      "--output_path", str(tmp_path))
    # lm-eval's notices about what `compressed` and these tasks do by design are kept out
    assert "not of type `str`" not in proc.stderr and "Custom kwargs" not in proc.stderr
    [results_file] = list(tmp_path.rglob("results_*.json"))
    results = json.loads(results_file.read_text())["results"]
    ours = runs["magnitude:0.25"]
    assert results["wikitext2_ppl"]["word_perplexity,none"] == pytest.approx(word_ppl(ours), rel=1e-6)
    assert results["wikitext2_chunked"]["perplexity,none"] == pytest.approx(chunked_ppl(ours),
                                                                            rel=1e-6)


def test_exported_int8_checkpoint_scores_the_same_with_stock_hf(sweep, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    _, runs, _ = sweep
    out = tmp_path / "smollm2-int8"
    _compbench("export", "--recipe", "int8", "--device", "cpu", str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] is True
    results = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={out},device=cpu,max_length=2048",
        tasks=["wikitext2_ppl"], limit=2, task_manager=TaskManager(include_path=str(TASKS_DIR)),
        log_samples=False, bootstrap_iters=0)
    stock = results["results"]["wikitext2_ppl"]["word_perplexity,none"]
    assert stock == pytest.approx(word_ppl(runs["int8"]), rel=1e-4)
