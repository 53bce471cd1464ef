"""GGUF files as model sources: the conversion is checked tensor by tensor against gguf's own
dequantization, and the Gemma-3 270M model it gives is checked against references that do not
use transformers (llama.cpp's tokenizer algorithm, a plain-torch forward, llama.cpp's ids)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compbench.errors import CompbenchError
from compbench.model_zoo import get_preset
from compbench.model_zoo.cache import read_manifest
from compbench.model_zoo.embedded import gguf_path, materialize_embedded
from compbench.model_zoo.gguf import ARCHITECTURES, materialize_gguf, verify_checkpoint
from compbench.model_zoo.gguf_tokenizer import token_strings
from compbench.model_zoo.sources import source_identity
from compbench.model_zoo.tokenizers import expects_bos
from compbench.tests.model_zoo.references import gemma3_logits, gguf_tensors, perplexity, spm_encode

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def gemma_checkpoint() -> Path:
    """Gemma-3 270M from its Q4_K_M GGUF, materialized and verified once into the cache."""
    return materialize_embedded("gemma3-270m")


@pytest.fixture(scope="session")
def gemma_reader():
    import gguf

    return gguf.GGUFReader(str(gguf_path("gemma3-270m")))


@pytest.fixture(scope="session")
def wikitext_start(data_dir) -> str:
    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()[:60]]
    return "\n\n".join(rows)


def test_the_conversion_recorded_what_it_verified(gemma_checkpoint, checkpoint):
    gemma = read_manifest(gemma_checkpoint)["verified"]
    assert gemma["tensors"] == 236 and "1 + w" in gemma["transform"]
    assert {"rope.freq_base", "attention.sliding_window", "attention.key_length"} <= set(gemma["config"])
    assert gemma["tokenizer"] == {"vocabulary": 262144, "bos_token_id": 2, "eos_token_id": 1,
                                  "padding_token_id": 0, "unknown_token_id": 3, "adds_bos": True}
    smollm = read_manifest(checkpoint)["verified"]
    assert smollm["tensors"] == 272 and "un-permuted" in smollm["transform"]
    assert smollm["tokenizer"]["adds_bos"] is False


def _copy_with(folder: Path, target: Path, name: str, edit) -> Path:
    """A copy of a checkpoint folder with one tensor edited."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(folder, target)
    tensors = load_file(str(target / "model.safetensors"))
    tensors[name] = edit(tensors[name])
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_a_converted_tensor_one_ulp_off_fails_verification(checkpoint, tmp_path):
    """One weight of one layer moved to the next float32: the bit-exact check names the tensor."""
    import gguf

    def nudge(weights):
        weights = weights.copy()
        weights[3, 7] = np.nextafter(weights[3, 7], np.float32(np.inf))
        return weights

    reader = gguf.GGUFReader(str(gguf_path()))
    name = "model.layers.11.self_attn.k_proj.weight"
    with pytest.raises(CompbenchError, match=rf"tensor {name} differs from gguf's dequantization of "
                                             r"blk\.11\.attn_k\.weight \(max \|difference\| "):
        verify_checkpoint(_copy_with(checkpoint, tmp_path / "nudged", name, nudge), reader, "llama",
                          ARCHITECTURES["llama"])
    verify_checkpoint(checkpoint, reader, "llama", ARCHITECTURES["llama"])  # the original passes


@pytest.mark.heavy
def test_a_conversion_that_fails_verification_is_not_kept(tmp_path, monkeypatch):
    """A wrong transform in the table (llama's Q/K left permuted) stops the build: an error naming
    the tensor, and no folder in the cache to be loaded later."""
    import dataclasses

    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path))
    wrong = dataclasses.replace(ARCHITECTURES["llama"], transform=lambda name, w, meta: w)
    monkeypatch.setitem(ARCHITECTURES, "llama", wrong)
    with pytest.raises(CompbenchError, match=r"failed verification: tensor model\.layers\.0\.self_attn\."
                                             r"[qk]_proj\.weight differs"):
        materialize_gguf(gguf_path())
    assert not [p for p in (tmp_path / "models").iterdir() if p.is_dir()]


def test_a_gguf_path_is_a_model_source(gemma_checkpoint):
    path = gguf_path("gemma3-270m")
    preset = get_preset(str(path))
    assert (preset.name, preset.source) == ("gemma-3-270m-q4_k_m", f"gguf:{path}")
    identity = source_identity(preset)
    assert identity["kind"] == "gguf-file"
    assert identity["sha256"] == read_manifest(gemma_checkpoint)["source_sha256"]
    from compbench.model_zoo.sources import resolve_source

    assert resolve_source(preset) == str(gemma_checkpoint)  # the same file: one conversion


@pytest.mark.heavy
def test_gemma_tokenizer_is_llama_cpps(gemma_checkpoint, gemma_reader, wikitext_start):
    """The rebuilt tokenizer gives the ids of llama.cpp's algorithm (written out in references.py)
    on real text and on whitespace, tab, newline, accent, CJK and emoji runs. transformers' own
    conversion builds a Unigram model here and gets "the cat" wrong."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gemma_checkpoint)
    field = gemma_reader.fields
    scores = np.concatenate([field["tokenizer.ggml.scores"].parts[i]
                             for i in field["tokenizer.ggml.scores"].data]).tolist()
    types = np.concatenate([field["tokenizer.ggml.token_type"].parts[i]
                            for i in field["tokenizer.ggml.token_type"].data]).tolist()
    pieces = token_strings(gemma_reader)
    texts = [wikitext_start[:6000], "Hello  world\n\n\tx   =  1\t\t2 \n \n", "naïve café 東京 🙂 ½ ∑ x²",
             "The cat sat on the mat."]
    for text in texts:
        assert tokenizer(text, add_special_tokens=False).input_ids == spm_encode(pieces, scores, types, text)
    assert tokenizer.convert_ids_to_tokens(tokenizer("the cat").input_ids) == ["<bos>", "the", "▁cat"]


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m", pytest.param(
    "qwen2.5-coder-0.5b-instruct", marks=pytest.mark.heavy)])  # heavy: its first conversion
def test_tokenizers_give_the_ids_llama_cpp_gave(name):
    """The ids llama.cpp itself gave for a few probe texts (fixtures/llama_cpp_tokens.json, made by
    bench/gguf_reference.py from the same GGUF files). SmolLM2's ids are known to differ next to
    numeric characters (see BYTE_LEVEL_RULES), so its texts holding one are left out."""
    import re

    from transformers import AutoTokenizer

    golden = json.loads((FIXTURES / "llama_cpp_tokens.json").read_text())["models"][name]
    folder = materialize_embedded(name)
    assert read_manifest(folder)["source_sha256"] == golden["gguf_sha256"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    compared = 0
    for text, ids in zip(golden["texts"], golden["ids"], strict=True):
        if name == "smollm2-135m" and re.search(r"\d|[½²]", text):
            continue
        assert tokenizer(text, add_special_tokens=False).input_ids == ids, text
        compared += 1
    assert compared >= 3


@pytest.mark.heavy
def test_gemma_expects_bos_and_the_checkpoint_computes_what_llama_cpp_computes(
        gemma_checkpoint, gemma_reader, wikitext_start):
    """The converted model's logits against a plain-torch Gemma-3 over gguf's dequantized tensors
    (llama.cpp's graph, norms as stored): 600 tokens, so the 512-token sliding window is crossed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gemma_checkpoint)
    assert expects_bos(tokenizer)
    ids = tokenizer(wikitext_start).input_ids[:600]
    assert ids[0] == 2
    model = AutoModelForCausalLM.from_pretrained(gemma_checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0]
    meta = {k.removeprefix("gemma3."): f.contents() for k, f in gemma_reader.fields.items()
            if k.startswith("gemma3.")}
    reference = gemma3_logits(gguf_tensors(gemma_reader), meta, ids)
    # float32 sums in another order over 18 layers; logits reach about 45
    torch.testing.assert_close(ours, reference, atol=2e-3, rtol=0)
    assert perplexity(ours, ids) == pytest.approx(perplexity(reference, ids), rel=1e-5)
    assert perplexity(ours, ids) < 30


@pytest.mark.heavy
def test_gemma_from_the_command_line(gemma_checkpoint, tmp_path):
    """`compbench eval --model FILE.gguf`: every chunk starts with BOS, and the baseline check
    passed and says so in the results."""
    path = gguf_path("gemma3-270m")
    proc = subprocess.run(
        [sys.executable, "-m", "compbench.cli.main", "eval", "--model", str(path), "--recipe", "fp32",
         "--tasks", "wikitext2_chunked", "--limit", "1", "--device", "cpu", "--no-store",
         "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stdout + proc.stderr
    record = json.loads(next(tmp_path.glob("gemma-3-270m-q4_k_m__fp32__*.json")).read_text())
    check = record["baseline_check"]
    assert check["passed"] and check["bos"] and check["tokens"] == 1024 and check["perplexity"] < 20
    protocol = record["tasks"]["wikitext2_chunked"]["protocol"]
    assert protocol["bos"].startswith("every chunk starts with BOS") and protocol["stride_tokens"] == 2047
    assert record["artifact"]["source"]["kind"] == "gguf-file"
    assert record["tasks"]["wikitext2_chunked"]["metrics"]["perplexity,none"]["value"] < 20


def test_a_gguf_path_as_lm_eval_model_args(gemma_checkpoint):
    """`--model_args pretrained=FILE.gguf` builds the same model, and wikitext2_chunked finds the
    tokenizer from that path (lm-eval hands it the model args as metadata)."""
    from compbench.evaluation.lm_model import CompressedLM
    from compbench.tasks.chunked import _tokenizer_source

    path = gguf_path("gemma3-270m")
    lm = CompressedLM.create_from_arg_string(f"pretrained={path},recipe=fp32,device=cpu")
    assert lm.preset.source == f"gguf:{path}" and lm.artifact.baseline_check.passed
    assert _tokenizer_source({"pretrained": str(path)}) == str(gemma_checkpoint)
