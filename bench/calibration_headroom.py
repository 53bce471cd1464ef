"""How much a calibrated 4-bit method can gain over round-to-nearest on a model: GPTQ calibrated
on the study's WikiText-2 validation windows, and GPTQ calibrated on the very text it is scored on.

    python bench/calibration_headroom.py --model qwen2.5-coder-0.5b-instruct

Perplexity (WikiText-2 test, GPTQ protocol, the first `--chunks` x 2048 tokens) of the float
model, `rtn`, `gptq` with the study's calibration, and `gptq` whose calibration windows are
the scored tokens themselves: an upper bound on what GPTQ's layer-wise objective can give on
this text. If even that barely beats RTN, the calibration set is not what holds GPTQ back.
A second table gives, per layer kind, how far the largest input channel's sum of squares (the
Hessian diagonal GPTQ weighs columns by) stands above the mean: outlier channels are where
calibrated methods gain on round-to-nearest.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from norm_fusion import perplexity, test_chunks  # the same protocol as the norm-fusion bench
from tabulate import tabulate


def scored_text(tokenizer, chunks: int) -> list[str]:
    """The first WikiText-2 test rows that hold the scored tokens (and a few more)."""
    from compbench.core.io import data_dir

    rows = [json.loads(line)["text"] for line in
            (data_dir() / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    taken = 1
    while len(tokenizer("\n\n".join(rows[:taken])).input_ids) < chunks * 2048 + 64:
        taken += 20
    return rows[:taken]


def channel_outliers(model, ids: torch.Tensor) -> list[list[str]]:
    """Per layer kind: the largest max/mean of an input's per-channel sum of squares."""
    sums: dict[str, torch.Tensor] = {}

    def hook(name):
        def on_input(_module, args):
            x = args[0].reshape(-1, args[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
        return on_input

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    with torch.no_grad():
        model(ids)
    for handle in handles:
        handle.remove()
    worst: dict[str, float] = defaultdict(float)
    for name, diagonal in sums.items():
        kind = name.rsplit(".", 1)[-1]
        worst[kind] = max(worst[kind], float(diagonal.max() / diagonal.mean()))
    return [[kind, f"{ratio:.0f}"] for kind, ratio in worst.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="a compbench preset")
    parser.add_argument("--bits", type=int, default=4, help="bits per weight (groups of 64, asymmetric)")
    parser.add_argument("--chunks", type=int, default=4, help="2048-token chunks of WikiText-2 test")
    parser.add_argument("--output", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()
    from compbench.artifacts.build import compression_context
    from compbench.compressors import compress, parse_recipe
    from compbench.compressors.calibration import calibration_ids
    from compbench.compressors.llmc import decompress_for_inference
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    preset = get_preset(args.model)
    model, tokenizer = load_model(preset, device="cpu")
    context, ids = compression_context(tokenizer), test_chunks(tokenizer, args.chunks)
    gptq = f"gptq:{args.bits}:sym=false:nsamples={args.chunks * 4}"
    calibration = calibration_ids(context, parse_recipe(gptq).steps[0].config)
    print(f"{args.model}: float, rtn, gptq, gptq calibrated on the scored text ...", flush=True)
    rows = [["float", "", f"{perplexity(model, ids):.2f}", ""]]
    outliers = channel_outliers(model, calibration)
    on_scored = type(context)(tokenizer=tokenizer,
                              calibration_text=lambda _name: scored_text(tokenizer, args.chunks))
    for recipe, calibrated_on, step_context in [
            (f"rtn:{args.bits}:sym=false", "", context),
            (gptq, "WikiText-2 validation", context),
            (gptq, "the scored text", on_scored)]:
        started = time.time()
        model = compress(load_model(preset, device="cpu")[0], parse_recipe(recipe), step_context).model
        decompress_for_inference(model)
        rows.append([recipe, calibrated_on, f"{perplexity(model, ids):.2f}", f"{time.time() - started:.0f}"])
        print(rows[-1], flush=True)
    text = (tabulate(rows, headers=["recipe", "calibrated on", "perplexity", "seconds"], tablefmt="github")
            + "\n\n" + tabulate(outliers, headers=["layer", "largest channel / mean (sum of x^2)"],
                                tablefmt="github"))
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
