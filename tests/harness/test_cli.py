"""The CLI: bad input gives one clear line and a non-zero exit, never a traceback."""

import os
import subprocess
import sys

import pytest

from compbench.harness.cli import main


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
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compbench: error: ")
    assert message in err
    assert len(err.splitlines()) == 1


def test_missing_dataset_file_through_the_real_command(tmp_path):
    (tmp_path / "sst2").mkdir()
    env = {**os.environ, "COMPBENCH_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.harness.cli", "eval", "--recipe", "fp32",
         "--tasks", "wikitext2_ppl", "--limit", "1", "--output-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wikitext-2-raw-v1/test.jsonl not found" in proc.stderr.strip().splitlines()[-1]


def test_every_command_has_help(capsys):
    for command in ["eval", "report", "export", "methods", "models"]:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "usage: compbench " + command in capsys.readouterr().out


def test_methods_lists_every_registered_method(capsys):
    from compbench.compressors import COMPRESSORS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMPRESSORS)
