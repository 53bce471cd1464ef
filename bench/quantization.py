"""The GPTQ study on the embedded model: bits 2/3/4/8 x GPTQ/RTN, plus bitsandbytes, dynamic int8 and mixed.

    python bench/quantization.py            # writes bench/results/quantization.{md,png}

Every row is a `compbench eval` run (results JSON under bench/results/quantization/, so an
interrupted study resumes): wikitext2_chunked perplexity on the first 4 x 2048 test tokens, size
of the packed model in memory and of its checkpoint on disk, ratio against the model in 16-bit,
bytes of the quantized linears against their fp16 size, prefill and generation tokens/s (a
128-token prompt, 16 new tokens), compression seconds and peak memory. Speeds are comparable
only within one run of this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

CALIBRATION = "nsamples=16:seqlen=512"  # 8k tokens: half the default, to keep the study short
RECIPES = (
    ["fp32", "bf16"]
    + [f"rtn:{b}" for b in (8, 4, 3, 2)]
    + [f"gptq:{b}:{CALIBRATION}" for b in (8, 4, 3, 2)]
    + ["int8", "nf4", "fp4", "dynamic-int8", "torchao-int8", "torchao-int8:activations=true",
       "mixed:5", f"mixed:5:method=gptq:{CALIBRATION}",
       "mixed:5:method=bnb",
       f"wanda:0.5:{CALIBRATION}+gptq:4:{CALIBRATION}"]
)
TASK, KEY = "wikitext2_chunked", "perplexity,none"


def _row(recipe: str, record, baseline_ppl: float) -> list:
    compression, timing = record.compression, record.timing
    stats = compression.steps[-1]["stats"] if compression.steps else {}
    ppl = record.metric(TASK, KEY).value
    linear_ratio = stats.get("linear_bytes_vs_fp16")
    disk = compression.checkpoint_mb
    return [
        recipe.replace(f":{CALIBRATION}", ""),
        f"{compression.size_mb:.1f}", "-" if disk is None else f"{disk:.1f}",
        f"{compression.compression_ratio_vs_16bit:.2f}",
        "-" if linear_ratio is None else f"{linear_ratio:.3f}",
        f"{ppl:.2f}", f"{100 * (ppl / baseline_ppl - 1):+.1f}%",
        f"{timing.prefill_tokens_per_s:.0f}",
        "-" if timing.generate_tokens_per_s is None else f"{timing.generate_tokens_per_s:.1f}",
        f"{compression.seconds:.1f}", f"{timing.peak_rss_mb:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=4, help="2048-token chunks of the test text")
    parser.add_argument("--output-dir", default="bench/results")
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    from compbench.compressors import parse_recipe
    from compbench.core.io import set_data_dir, write_text_atomic
    from compbench.harness.evaluate import EvalSettings
    from compbench.harness.runner import RunSpec, run_sweep
    from compbench.reports.plots import line_plot
    from compbench.reports.store import load_results

    if args.data_dir:
        set_data_dir(args.data_dir)
    out = Path(args.output_dir)
    runs = out / "quantization"
    settings = EvalSettings((TASK,), limit=args.limit)
    run_sweep([RunSpec(args.model, r, settings) for r in RECIPES], runs)
    finished = {r.recipe: r for r in load_results(runs) if r.ok}
    records = {r: finished[str(parse_recipe(r))] for r in RECIPES if str(parse_recipe(r)) in finished}
    baseline = records["fp32"].metric(TASK, KEY).value
    rows = [_row(r, records[r], baseline) for r in RECIPES if r in records]
    header = ["recipe", "size MB", "on disk MB", "ratio vs 16-bit", "quantized linears / fp16",
              f"ppl ({args.limit}x2048)", "Δ ppl", "prefill tok/s", "generate tok/s",
              "compress s", "peak RSS MB"]
    table = tabulate(rows, header, tablefmt="github", disable_numparse=True)
    write_text_atomic(out / "quantization.md", table + "\n")
    print(table)
    series: dict[str, list[tuple[float, float]]] = {"GPTQ": [], "RTN": []}
    labels: dict[str, list[str]] = {"GPTQ": [], "RTN": []}
    for recipe, record in records.items():
        method = {"gptq": "GPTQ", "rtn": "RTN"}.get(recipe.split(":")[0])
        if method and "+" not in recipe:
            bits = recipe.split(":")[1]
            series[method].append((int(bits), record.metric(TASK, KEY).value))
            labels[method].append(f"{record.compression.size_mb:.0f} MB")
    line_plot(series, out / "quantization.png", xlabel="bits per weight (group size 64)",
              ylabel="wikitext-2 perplexity (log)", log_y=True, labels=labels,
              title=f"{args.model}: GPTQ vs round-to-nearest, fp32 = {baseline:.2f}")
    print(f"wrote {out / 'quantization.md'} and {out / 'quantization.png'}")


if __name__ == "__main__":
    main()
