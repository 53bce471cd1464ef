"""A GGUF model in compbench against references that do not use transformers.

    python bench/gguf_reference.py                       # the three embedded decoders
    python bench/gguf_reference.py --model path/to/file.gguf
    python bench/gguf_reference.py --fixture tests/model_zoo/fixtures/llama_cpp_tokens.json
    python bench/gguf_reference.py --model gemma3-270m --transformers-folder /tmp/gemma-by-transformers

For each model: the tokenization of the whole WikiText-2 test text (rows joined with blank
lines) by compbench's converted tokenizer and by llama.cpp, and the `wikitext2_chunked`
perplexity of its first chunks (default 4 x 2048 tokens, BOS first in each where the model
expects one, as compbench cuts them) computed three ways: compbench's checkpoint, a
plain-torch Gemma-3 or Qwen2 forward over gguf's own dequantized tensors (those architectures
only; tests/model_zoo/references.py), and llama.cpp itself, whose CPU kernels multiply the quantized
weights by 8-bit-quantized activations, so it agrees to a fraction of a percent, not exactly.

llama.cpp comes from llama-cpp-python, which is not a compbench dependency: `pip install
llama-cpp-python` builds llama.cpp from source (28 minutes here on 2 cores, beside a test run).
Without it the llama.cpp columns are left out. `--fixture` writes llama.cpp's ids of a few probe texts, which
the tests compare with compbench's tokenizer. `--transformers-folder OUT` writes the folder
transformers' GGUF loading alone gives (for Gemma-3: a wrong tokenizer, no BOS), to see what
compbench's baseline check says of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path

from tabulate import tabulate

PROBES = ["The cat sat on the mat.", "Hello  world\n\n\tx   =  y\t\tz \n \n",
          "naïve café 東京 🙂 ½ ∑ x²", " = Robert Boulter = \n\n Robert Boulter is an English film , "
          "television and theatre actor .", "def f(x):\n    return x ** 2  # square\n"]


def _wikitext(data_dir: Path) -> str:
    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    return "\n\n".join(rows)


def _llama(path: Path, seqlen: int):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(path), n_ctx=seqlen, n_batch=seqlen, n_ubatch=seqlen, logits_all=True,
                 n_threads=os.cpu_count(), verbose=False)


def _nll(logits, ids: list[int]) -> float:
    """Summed NLL of tokens 2..n from a chunk's logits (numpy or torch, any float dtype)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)[:-1]
    top = logits.max(1, keepdims=True)
    logsumexp = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
    return float(-(logits[np.arange(len(ids) - 1), ids[1:]] - logsumexp).sum())


def compare(model: str, data_dir: Path, chunks: int, seqlen: int) -> dict:
    """One model's row: tokenization agreement with llama.cpp, and the chunked protocol's
    perplexity over the first `chunks` chunks computed by each implementation."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source
    from compbench.model_zoo.tokenizers import expects_bos
    from compbench.tests.model_zoo.references import gemma3_logits, gguf_tensors, qwen2_logits

    preset = get_preset(model)
    folder = resolve_source(preset)
    path = Path(json.loads((Path(folder) / "compbench-manifest.json").read_text())["source"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = _wikitext(data_dir)
    ours = tokenizer(text, add_special_tokens=False).input_ids
    bos = expects_bos(tokenizer)
    width = seqlen - bos  # as wikitext2_chunked cuts them (tasks/chunked.py)
    pieces = [[tokenizer.bos_token_id] * bos + ours[i * width:(i + 1) * width] for i in range(chunks)]
    predicted = chunks * (seqlen - 1)
    checkpoint = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        nll = sum(_nll(checkpoint(torch.tensor([ids])).logits[0], ids) for ids in pieces)
    row = {"model": preset.name, "text tokens": len(ours), "bos each chunk": bos,
           "compbench ppl": math.exp(nll / predicted)}
    reader = gguf.GGUFReader(str(path))
    architecture = reader.fields["general.architecture"].contents()
    reference = {"gemma3": gemma3_logits, "qwen2": qwen2_logits}.get(architecture)
    if reference is not None:
        meta = {k.removeprefix(architecture + "."): f.contents() for k, f in reader.fields.items()
                if k.startswith(architecture + ".")}
        weights = gguf_tensors(reader)
        nll = sum(_nll(reference(weights, meta, ids), ids) for ids in pieces)
        row["plain torch ppl"] = math.exp(nll / predicted)
    llm = _llama(path, seqlen)
    if llm is not None:
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        row["llama.cpp tokens"] = len(theirs)
        row["identical ids"] = theirs == ours
        if theirs != ours:
            import difflib

            spans = [op for op in difflib.SequenceMatcher(None, theirs, ours, autojunk=False).get_opcodes()
                     if op[0] != "equal"]
            row["differing spans"] = len(spans)
            row["first difference"] = spans[0][1]
        nll = 0.0
        for ids in pieces:
            llm.reset()
            llm.eval(ids)
            nll += _nll(llm.scores[:len(ids)], ids)
        row["llama.cpp ppl"] = math.exp(nll / predicted)
    return row


def write_fixture(models: list[str], path: Path) -> None:
    """llama.cpp's ids of the probe texts for each model (what the tokenizer tests compare with)."""
    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source

    out = {"made_by": "python bench/gguf_reference.py --fixture " + str(path),
           "llama_cpp_python": __import__("llama_cpp").__version__, "models": {}}
    for model in models:
        folder = Path(resolve_source(get_preset(model)))
        manifest = json.loads((folder / "compbench-manifest.json").read_text())
        llm = _llama(Path(manifest["source"]), 512)
        out["models"][model] = {"gguf_sha256": manifest["source_sha256"], "texts": PROBES,
                                "ids": [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)
                                        for t in PROBES]}
    text = json.dumps(out, indent=1, ensure_ascii=False)  # one line per list of ids:
    text = re.sub(r"\[\s+([\d,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")
    print(f"wrote {path}")


def write_transformers_folder(model: str, out: Path) -> None:
    """The folder a user gets from transformers' GGUF loading alone (model and tokenizer saved
    as loaded): for Gemma-3 its tokenizer is a Unigram over BPE scores and adds no BOS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source

    folder = Path(resolve_source(get_preset(model)))
    source = Path(json.loads((folder / "compbench-manifest.json").read_text())["source"])
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    clean = type(loaded)(type(loaded.config).from_dict(config))
    clean.load_state_dict(loaded.state_dict())
    clean.save_pretrained(out)
    AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="a preset or a .gguf file (repeatable; default: "
                        "gemma3-270m, smollm2-135m and qwen2.5-coder-0.5b-instruct)")
    parser.add_argument("--data-dir", default=os.environ.get("COMPBENCH_DATA_DIR", "../shared/data"))
    parser.add_argument("--chunks", type=int, default=4, help="chunks of the protocol to score (default 4)")
    parser.add_argument("--seqlen", type=int, default=2048, help="tokens a chunk (default 2048)")
    parser.add_argument("--fixture", type=Path, help="write llama.cpp's ids of the probe texts here")
    parser.add_argument("--transformers-folder", type=Path, help="write the first model as transformers' "
                        "GGUF loading alone converts it, to this folder")
    args = parser.parse_args()
    models = args.model or ["gemma3-270m", "smollm2-135m", "qwen2.5-coder-0.5b-instruct"]
    os.environ["COMPBENCH_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if args.fixture:
        write_fixture(models, args.fixture)
        return
    if args.transformers_folder:
        write_transformers_folder(models[0], args.transformers_folder)
        return
    rows = [compare(model, Path(args.data_dir), args.chunks, args.seqlen) for model in models]
    header = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k)
                    if k in rows[0] else 99)
    print(tabulate([[row.get(k, "") for k in header] for row in rows], header, tablefmt="github",
                   floatfmt=".4f"))


if __name__ == "__main__":
    main()
