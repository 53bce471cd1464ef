"""The embedded model: materialized once from the GGUF, exactly dequantized, cache-safe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compbench.errors import CompbenchError
from compbench.model_zoo import get_preset
from compbench.model_zoo.cache import MANIFEST
from compbench.model_zoo.embedded import gguf_path, materialize_embedded


def test_checkpoint_is_a_plain_hf_folder(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MANIFEST} <= names
    config = json.loads((checkpoint / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"]) == (30, 576)


def test_weights_are_the_exact_dequantization_of_the_gguf(checkpoint):
    import gguf
    from safetensors import safe_open

    reader = gguf.GGUFReader(str(gguf_path()))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    assert tensor.tensor_type.name == "Q4_1"
    expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as handle:
        actual = handle.get_tensor("model.layers.0.mlp.down_proj.weight")
    assert actual.dtype == torch.float32
    np.testing.assert_array_equal(actual.numpy(), expected.reshape(actual.shape))


def test_tokenizer_special_tokens_follow_the_gguf_metadata(checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tokenizer("The cat").input_ids[0] != tokenizer.bos_token_id  # GGUF: no auto BOS


def test_second_call_reuses_the_cache(checkpoint):
    stamp = (checkpoint / "model.safetensors").stat().st_mtime_ns
    assert materialize_embedded() == checkpoint
    assert (checkpoint / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.heavy
def test_concurrent_first_use_builds_one_valid_checkpoint(tmp_path):
    """Two processes materialize into an empty cache at once; both get the same good folder."""
    env = {**os.environ, "COMPBENCH_CACHE": str(tmp_path)}
    code = ("from compbench.model_zoo.embedded import materialize_embedded;"
            "print(materialize_embedded())")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    folders = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(folders) == 1
    folder = Path(folders.pop())
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(folder)


def test_corrupt_cache_is_reported(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path))
    target = tmp_path / "models" / checkpoint.name
    target.mkdir(parents=True)
    for name in ("config.json", MANIFEST):
        (target / name).write_bytes((checkpoint / name).read_bytes())
    (target / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(CompbenchError, match="corrupt model cache .* remove it"):
        materialize_embedded()


def test_unknown_preset_lists_known_ones():
    with pytest.raises(CompbenchError, match="unknown model preset 'smollm3'.*smollm2-135m"):
        get_preset("smollm3")


def test_presets_name_hub_ids_without_downloading():
    assert get_preset("qwen2-0.5b-instruct").source == "Qwen/Qwen2-0.5B-Instruct"
    assert get_preset("roberta-large").task_head == "masked-lm"


def test_a_cache_damaged_in_place_is_one_clear_line_and_no_result(tmp_path, checkpoint):
    """64 MiB of the weights zeroed in place, the size unchanged: the sha256 check catches it
    before any run starts, so no results file is written."""
    import shutil

    target = tmp_path / "cache" / "models" / checkpoint.name
    shutil.copytree(checkpoint, target)
    weights = target / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(bytes(64 * 2**20))
    assert weights.stat().st_size == size
    env = {**os.environ, "COMPBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.cli.main", "eval", "--recipe", "fp32", "--tasks",
         "wikitext2_chunked", "--limit", "1", "--device", "cpu", "--output-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"compbench: error: corrupt model cache at {target}") and "rm -r" in last
    assert not list((tmp_path / "out").glob("*.json"))
