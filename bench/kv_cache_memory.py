"""The KV cache's memory after a long prompt, dense and quantized (`--kv-cache int8/int4/int2`).

    python bench/kv_cache_memory.py --model smollm2-135m --tokens 2048 --tokens 8192 \
        --output bench/results/kv_cache_memory.md

For each prompt length, a prefill of that many WikiText-2 validation tokens into transformers'
DynamicCache and into its QuantizedCache (HQQ backend) of each kind; the MB each holds (keys,
values, scales and zeros, the float residual), and the share saved. Needs the data dir.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tabulate import tabulate

KINDS = (None, "int8", "int4", "int2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a compbench preset")
    parser.add_argument("--tokens", type=int, action="append", help="prompt lengths (repeatable)")
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    from compbench.evaluation.kv_cache import prefill_cache_mb
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model
    from compbench.tasks.calibration import wikitext_prompt_ids

    model, tokenizer = load_model(get_preset(args.model), device="cpu")
    rows = []
    for tokens in args.tokens or [2048, 8192]:
        print(f"prefill of {tokens} tokens, dense and {', '.join(k for k in KINDS if k)} ...", flush=True)
        prompt = torch.tensor([wikitext_prompt_ids(tokenizer, tokens)])
        sizes = {}
        for kind in KINDS:
            started = time.perf_counter()
            sizes[kind] = prefill_cache_mb(model, prompt, kind)
            seconds = time.perf_counter() - started
            print(f"  {kind or 'dense'}: {sizes[kind]:.1f} MB ({seconds:.0f} s)", flush=True)
        for kind in KINDS:
            rows.append([args.model, tokens, kind or f"dense ({model.dtype})".replace("torch.", ""),
                         f"{sizes[kind]:.1f}", f"{1 - sizes[kind] / sizes[None]:.0%}"])
    table = tabulate(rows, headers=["model", "prompt tokens", "cache", "MB", "saved"], tablefmt="github")
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
