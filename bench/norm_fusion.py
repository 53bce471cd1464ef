"""Why rotations make 4-bit rounding worse on the embedded SmolLM2: the norm fusion they need.

    python bench/norm_fusion.py --model smollm2-135m --recipe rtn:4:sym=false

A rotation commutes with an RMSNorm only once the norm's weight has been folded into the linear
layers it feeds (llm-compressor's `fuse_norm_linears`, which its SpinQuantModifier runs first).
This measures perplexity (WikiText-2 test, GPTQ protocol, first 2 x 2048 tokens) of the recipe
on the model as it is, after the norm fusion alone, and after `rotate` (fusion and rotations):
if fusion alone already costs what rotation costs, the rotation is not what hurts.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from tabulate import tabulate


def test_chunks(tokenizer, chunks: int) -> torch.Tensor:
    from compbench.core.io import data_dir

    rows = [json.loads(line)["text"] for line in
            (data_dir() / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    ids = tokenizer("\n\n".join(rows), return_tensors="pt").input_ids
    return ids[:, :chunks * 2048].reshape(chunks, 2048)


def perplexity(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        losses = [float(model(row[None], labels=row[None]).loss) for row in ids]
    return math.exp(sum(losses) / len(losses))


def fuse_norms_(model) -> None:
    """Fold each decoder block's norm weights into the linears they feed (llm-compressor's norm
    table and its `fuse_norm_linears`); the final norm feeds only the head, which stays float."""
    from compressed_tensors.utils import match_named_modules
    from llmcompressor.modeling import fuse_norm_linears
    from llmcompressor.modifiers.transform.spinquant.norm_mappings import infer_norm_mapping_from_model

    from compbench.compressors.targets import find_blocks

    for block in find_blocks(model).values():
        for mapping in infer_norm_mapping_from_model(model):
            for _, norm in match_named_modules(block, [mapping.norm]):
                fuse_norm_linears(norm, [m for _, m in match_named_modules(block, mapping.linears)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a compbench preset")
    parser.add_argument("--recipe", default="rtn:4:sym=false", help="the quantization after each variant")
    parser.add_argument("--chunks", type=int, default=2, help="2048-token chunks of WikiText-2 test")
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    from compbench.artifacts.build import compression_context
    from compbench.compressors import compress, parse_recipe
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    def fresh():
        return load_model(get_preset(args.model), device="cpu")[0]

    _, tokenizer = load_model(get_preset(args.model), device="cpu")
    context, ids = compression_context(tokenizer), test_chunks(tokenizer, args.chunks)
    rows = []
    for variant in ("as it is", "norms fused", "rotated (rotate)"):
        model = fresh()
        if variant == "norms fused":
            fuse_norms_(model)
        elif variant.startswith("rotated"):
            model = compress(model, parse_recipe("rotate"), context).model
        float_ppl = perplexity(model, ids)
        quantized = compress(model, parse_recipe(args.recipe), context).model
        rows.append([variant, f"{float_ppl:.2f}", f"{perplexity(quantized, ids):.2f}"])
        print(rows[-1], flush=True)
    table = tabulate(rows, headers=["model", "float perplexity", f"{args.recipe} perplexity"],
                     tablefmt="github")
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
