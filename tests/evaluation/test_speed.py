"""The speed run on the real embedded model, with few tokens: what it records, its bytes per
token, resuming after an interruption, refusing another run's file, and the table it renders.
Timings are recorded, never asserted (the machine is noisy)."""

import json

import pytest

from compbench.compressors import parse_recipe
from compbench.core.measure import state_bytes
from compbench.core.tensors import linear_kernels
from compbench.errors import CompbenchError
from compbench.evaluation import speed_run
from compbench.evaluation.speed import SpeedSettings, bytes_read_per_token
from compbench.model_zoo.presets import get_preset
from compbench.reports.plots import speed_plot
from compbench.reports.speed import render

TINY = SpeedSettings(new_tokens=3, prompt_lengths=(8, 16), batch_rows=2, repetitions=2, threads=1)
RECIPES = ["fp32", "int8wo"]


def _run(path, monkeypatch, settings=TINY, probe=True, **kwargs):
    if probe:
        monkeypatch.setattr(speed_run, "read_bandwidth_gb_per_s", lambda device: 10.0)  # skip 1 GB of copies
    return speed_run.run_speed(get_preset("smollm2-135m"), [parse_recipe(r) for r in RECIPES], settings,
                               path, llama_cpp=False, **kwargs)


def test_a_speed_run_records_every_figure_and_resumes_after_an_interruption(tmp_path, data_dir, monkeypatch):
    path = tmp_path / "speed.json"
    measured = speed_run.measure_once
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return measured(*args, **kwargs)

    monkeypatch.setattr(speed_run, "measure_once", interrupted)
    probes = iter([10.0, 12.0, 11.0])
    monkeypatch.setattr(speed_run, "read_bandwidth_gb_per_s", lambda device: next(probes))
    with pytest.raises(KeyboardInterrupt):
        _run(path, monkeypatch, probe=False)
    kept = json.loads(path.read_text())["repetitions"]
    assert len(kept) == 3  # written after each measurement: nothing measured is lost
    monkeypatch.setattr(speed_run, "measure_once", measured)
    run = _run(path, monkeypatch, probe=False)
    # probed at the start and after each repetition round (one before the interruption, one
    # after the resume); the best probe is the run's bandwidth
    assert run["read_bandwidth_probes_gb_per_s"] == [10.0, 12.0, 11.0]
    assert run["read_bandwidth_gb_per_s"] == 12.0
    assert run["repetitions"][:3] == kept
    assert sorted((r["subject"], r["repetition"]) for r in run["repetitions"]) == \
        [("fp32", 0), ("fp32", 1), ("int8wo", 0), ("int8wo", 1)]
    # each repetition rotates the order, so no row is always timed first
    assert [r["subject"] for r in run["repetitions"] if r["repetition"] == 1] == ["int8wo", "fp32"]
    for entry in run["repetitions"]:
        assert entry["decode_tokens_per_s"] > 0 and entry["batch_tokens_per_s"] > 0
        assert set(entry["time_to_first_token_s"]) == {"8", "16"}
        assert entry["prefill_tokens_per_s"] == pytest.approx(16 / entry["time_to_first_token_s"]["16"])
    fp32, int8wo = run["subjects"]["fp32"], run["subjects"]["int8wo"]
    assert fp32["kernels"] == {"dense float32": 211}  # 210 block linears and the tied head
    assert int8wo["kernels"] == {"int8 packed (aten._weight_int8pack_mm)": 210, "dense bfloat16": 1}
    assert int8wo["bytes_read_per_token"] < fp32["bytes_read_per_token"] / 3
    assert run["settings"]["threads"] == 1 and run["llama_cpp"] is None and "finished" in run
    # the same command again measures nothing and returns the stored run
    monkeypatch.setattr(speed_run, "measure_once", lambda *a, **k: pytest.fail("measured again"))
    assert _run(path, monkeypatch)["repetitions"] == run["repetitions"]
    text = render(run)
    assert "12.0 GB/s, the best of 3 probes, at the start and after each repetition: 10.0-12.0" in text
    assert "| fp32 " in text and "| int8wo " in text and "limit tok/s" in text and "% of limit" in text
    assert speed_plot(run, tmp_path / "speed.png").stat().st_size > 0


def test_another_runs_file_is_refused_not_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "speed.json"
    identity = speed_run.run_identity("smollm2-135m", RECIPES, TINY, False)
    other = {**identity, "recipes": ["fp32"]}
    path.write_text(json.dumps({"schema": speed_run.SPEED_SCHEMA, "identity": other}))
    with pytest.raises(CompbenchError, match="holds another speed run .*pass --again"):
        _run(path, monkeypatch)
    path.write_text("{not json")
    with pytest.raises(CompbenchError, match="is not a speed run's file"):
        _run(path, monkeypatch)


def test_bytes_read_per_token_counts_a_tied_head_whole_and_an_untied_embedding_one_row(fp32_model):
    assert fp32_model.config.tie_word_embeddings
    assert bytes_read_per_token(fp32_model) == state_bytes(fp32_model)
    fp32_model.config.tie_word_embeddings = False
    import torch

    fp32_model.lm_head.weight = torch.nn.Parameter(fp32_model.lm_head.weight.detach().clone())
    embedding = fp32_model.get_input_embeddings().weight
    row = embedding.shape[1] * 4
    assert bytes_read_per_token(fp32_model) == state_bytes(fp32_model) - embedding.numel() * 4 + row
    assert linear_kernels(fp32_model) == {"dense float32": 211}


def test_a_run_without_llama_cpp_says_why():
    run = {"model": "m", "llama_cpp": "llama-cpp-python is not installed: make llama-cpp",
           "settings": {"new_tokens": 3, "prompt_lengths": [8], "batch_rows": 2, "repetitions": 1,
                        "threads": 1},
           "read_bandwidth_gb_per_s": 10.0, "repetitions": [],
           "subjects": {"fp32": {"kind": "compbench", "kernels": {"dense float32": 1},
                                 "bytes_read_per_token": 2**20}}}
    text = render(run)
    assert "No llama.cpp rows: llama-cpp-python is not installed: make llama-cpp." in text
    assert "| fp32 " in text and "n/a" in text  # nothing measured yet: no number made up


def test_llama_cpp_files_are_read_without_llama_cpp(monkeypatch):
    """What the llama.cpp rows need from a GGUF file (format, bytes a token reads) comes from the
    file itself; without llama-cpp-python the reason names the make target."""
    import sys

    from gguf import GGUFReader

    from compbench.evaluation import speed_llamacpp
    from compbench.model_zoo.embedded import gguf_path

    path = gguf_path("smollm2-135m")
    assert speed_llamacpp.file_type(path) == "Q4_1"
    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    assert "output.weight" not in tensors  # tied: the embedding is read whole, as the head
    assert speed_llamacpp.gguf_bytes_read_per_token(path) == sum(tensors.values())
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert "make llama-cpp" in speed_llamacpp.missing_reason()
