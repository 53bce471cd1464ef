"""The CLI: bad input gives one clear line and a non-zero exit, never a traceback."""

import os
import subprocess
import sys

import pytest

from compbench.cli.main import main


@pytest.mark.parametrize("argv, message", [
    (["eval", "--recipe", "wnda:0.5"], "unknown compression method 'wnda'"),
    (["eval", "--recipe", "magnitude:0.5:layer"], "malformed recipe step"),
    (["eval", "--recipe", "magnitude:1.2"], "sparsity must be in [0, 1), got 1.2"),
    (["eval", "--model", "gpt-9", "--recipe", "fp32"], "unknown model preset 'gpt-9'"),
    (["eval", "--recipe", "fp32", "--tasks", "wikitext3"], "unknown task(s) wikitext3"),
    (["eval", "--recipe", "fp32", "--data-dir", "/nonexistent/data"],
     "data dir /nonexistent/data does not exist"),
    (["export", "--recipe", "bogus", "out"], "unknown compression method 'bogus'"),
    (["report", "/nonexistent/results"], "results dir /nonexistent/results does not exist"),
    (["eval", "--recipe", "gptq:5"], "gptq: bits must be one of 2, 3, 4, 8, got 5"),
    (["eval", "--recipe", "wanda:n=2"], "wanda: give both n and m"),
    (["export", "--recipe", "dynamic-int8", "out"], "dynamic-int8 has no serialized format"),
    (["export", "--recipe", "mixed:5:method=bnb", "out"], "method=bnb has no serialized format"),
    (["sensitivity", "--method", "magnitude:0.5+int8"], "--method takes one step"),
    (["sensitivity", "--method", "magnitude:0.5", "--nsamples", "0"], "nsamples must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compbench: error: ")
    assert message in err
    assert len(err.splitlines()) == 1


def test_a_misspelt_model_arg_is_an_error_not_a_silent_fp32_run(capsys):
    argv = ["lm-eval", "--model", "compressed", "--model_args", "recpie=nf4", "--tasks", "sst2"]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # lm-eval logs its task index first
    assert last.startswith("compbench: error: bad --model_args for 'compressed': "
                           "unknown key(s) recpie; known: ")
    assert "recipe" in last


@pytest.mark.heavy
def test_missing_dataset_file_through_the_real_command(tmp_path):
    (tmp_path / "sst2").mkdir()
    env = {**os.environ, "COMPBENCH_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.cli.main", "eval", "--recipe", "fp32",
         "--tasks", "wikitext2_ppl", "--limit", "1", "--output-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wikitext-2-raw-v1/test.jsonl not found" in proc.stderr.strip().splitlines()[-1]


def _commands() -> list[str]:
    """Every subcommand the parser offers, read from the parser (so a new one is covered)."""
    import argparse

    from compbench.cli.main import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_the_commands_are_the_documented_ones():
    assert _commands() == ["distill", "eval", "export", "finetune", "gate", "lm-eval", "methods",
                           "models", "report", "sensitivity", "speed", "store", "sweep", "tasks"]


@pytest.mark.parametrize("command", [c for c in _commands() if c != "lm-eval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: compbench " + command)
    assert len(out.splitlines()) > 3  # a description or options, not just the usage line


def test_lm_eval_help_is_lm_evals_with_the_compressed_model(capsys):
    """`compbench lm-eval --help` is lm-eval's own help (its parser), and the `compressed`
    model is registered with lm-eval's registry alongside it."""
    from lm_eval.api.registry import get_model

    from compbench.evaluation.lm_model import CompressedLM

    with pytest.raises(SystemExit) as done:
        main(["lm-eval", "run", "--help"])
    assert done.value.code == 0
    assert "--model_args" in capsys.readouterr().out
    assert get_model("compressed") is CompressedLM


def test_methods_lists_every_registered_method(capsys):
    from compbench.compressors import COMPRESSORS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMPRESSORS)
    # the field's methods beside GPTQ: AWQ, SmoothQuant, HQQ, rotations, and OWL as an option
    listed = {line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")}
    assert {"awq", "smoothquant", "hqq", "rotate"} <= listed
    assert out.count("owl=False") == 2  # wanda's and sparsegpt's
    assert "--kv-cache int8|int4|int2" in out


@pytest.mark.parametrize("recipe", ["wanda:0.5", "awq:4", "smoothquant:0.5+dynamic-int8"])
def test_no_calibration_data_is_one_clear_line_before_any_run(recipe, tmp_path, capsys, monkeypatch,
                                                              data_dir):
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(tmp_path))  # restored after: --data-dir sets it
    (tmp_path / "wikitext-2-raw-v1").symlink_to(data_dir / "wikitext-2-raw-v1")  # the task's data only
    assert main(["eval", "--recipe", recipe, "--device", "cpu", "--data-dir", str(tmp_path),
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compbench: error: no calibration data: ") and len(err.splitlines()) == 1
    assert "wikitext-2-v1/validation.jsonl not found" in err
    assert not list((tmp_path / "out").glob("*.json"))


@pytest.mark.heavy
def test_sensitivity_prints_every_block_and_caches(tmp_path, capsys, data_dir, monkeypatch):
    import json

    from compbench.compressors import sensitivity

    argv = ["sensitivity", "--method", "magnitude:0.5:scope=layer", "--nsamples", "1",
            "--seqlen", "64", "--device", "cpu", "--output", str(tmp_path / "s.json")]
    assert main([*argv, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "model.layers.29" in out and "change %" in out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert len(saved["ppl"]) == 30 and saved["baseline_ppl"] > 1
    # magnitude 50% of a block never helps much; most blocks hurt
    assert sum(v > saved["baseline_ppl"] for v in saved["ppl"].values()) > 20
    def no_measuring(*args):
        raise AssertionError("measured again instead of reading the cache")

    monkeypatch.setattr(sensitivity, "window_perplexity", no_measuring)
    assert main(argv) == 0  # the second call reads the cache: same numbers, nothing measured
    assert json.loads((tmp_path / "s.json").read_text())["ppl"] == saved["ppl"]
    with pytest.raises(AssertionError, match="measured again"):  # --no-cache does measure
        main([*argv, "--no-cache"])


@pytest.mark.heavy
def test_export_names_gptq_checkpoints_as_the_research_did(tmp_path, data_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.cli.main", "export", "--recipe", "rtn:4",
         "--device", "cpu", "--gptq-revision", "r2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "exported" / "smollm2-135m-main-r2-4bits"
    config = (folder / "config.json").read_text()
    assert '"quant_method": "compressed-tensors"' in config and '"num_bits": 4' in config


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(capsys):
    assert main(["eval", "--recipe", "fp32", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("compbench: error: --device cuda: this machine has no CUDA device; "
                   "use --device cpu or leave --device out")

