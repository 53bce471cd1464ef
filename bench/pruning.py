"""The pruning studies on the embedded model.

    python bench/pruning.py            # writes bench/results/pruning.{md,png} and qwen2_pruning.md

1. The Phi-2 / Phi-3 Wanda report: sparsity 0.2-0.8 and 2:4 x {magnitude, Wanda, SparseGPT} ->
   wikitext2_chunked perplexity (first 4 x 2048 test tokens), pruning seconds and peak RSS; and
   accuracy and macro F1 on the five reasoning tasks (first --reasoning-limit documents of each).
2. Structured pruning (25% of MLP channels; and a third of the query heads too): parameters,
   checkpoint size on disk, prefill tokens/s against fp32 in the same sweep, perplexity.
3. The Qwen2 study's table: global magnitude 25% / 50%, ranked (the 4 least sensitive blocks
   25% -> 50%), mixed groups (attention 50%, MLP 25%), each alone and followed by int8 / nf4.

Every row is a `compbench eval` run whose results JSON lands under bench/results/, so an
interrupted study resumes where it stopped. Calibration: 16 windows of 512 tokens of the
wikitext-2 validation text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

CALIBRATION = "nsamples=16:seqlen=512"  # 8k tokens: half the default, to keep the study short
SPARSITIES = (0.2, 0.4, 0.5, 0.6, 0.8)
METHODS = ("magnitude", "wanda", "sparsegpt")
REASONING = ("commonsense_qa", "cosmos_qa", "logiqa", "reclor", "e_kar")
PPL_TASK, PPL_KEY = "wikitext2_chunked", "perplexity,none"
NM_NOTE = ("magnitude 2:4 keeps the 2 largest |w| of every 4 consecutive inputs "
           "(Wanda's N:M with a weight-only score)")
STRUCTURED = ("structured:ffn=0.25", "structured:heads=0.34:ffn=0.25")
QWEN2_PRUNING = ("magnitude:0.25", "magnitude:0.5",
                 "magnitude:0.25:scope=ranked:top=4:top_sparsity=0.5",
                 "magnitude:0.25:scope=groups:groups=self_attn@0.5")


def recipe_for(method: str, pattern: float | str) -> str:
    """`magnitude:0.5`, `wanda:0.5:nsamples=…`, `sparsegpt:n=2:m=4:nsamples=…`."""
    shape = f"n={pattern[0]}:m={pattern[2]}" if isinstance(pattern, str) else f"{pattern}"
    if method == "magnitude":
        return f"magnitude:{shape}"
    return f"{method}:{shape}:{CALIBRATION}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--reasoning-limit", type=int, default=20)
    parser.add_argument("--output-dir", default="bench/results")
    parser.add_argument("--data-dir")
    parser.add_argument("--run", default="ppl,reasoning,qwen2",
                        help="which sweeps to run before the tables are built (comma-separated; "
                        "'' builds the tables from the results already there)")
    args = parser.parse_args()

    from compbench.core.io import set_data_dir, write_text_atomic
    from compbench.harness.evaluate import EvalSettings
    from compbench.harness.runner import RunSpec, run_sweep
    from compbench.reports.plots import line_plot

    if args.data_dir:
        set_data_dir(args.data_dir)
    out = Path(args.output_dir)
    patterns: list[float | str] = [*SPARSITIES, "2:4"]
    grid = {(m, p): recipe_for(m, p) for m in METHODS for p in patterns}
    ppl_runs, reasoning_runs, qwen2_runs = (out / "pruning_ppl", out / "pruning_reasoning",
                                            out / "qwen2_pruning")
    qwen2 = [f"{p}{q}" for p in QWEN2_PRUNING for q in ("", "+int8", "+nf4")]
    sweeps = {
        "ppl": (ppl_runs, (PPL_TASK,), 4, ["fp32", *grid.values(), *STRUCTURED]),
        "reasoning": (reasoning_runs, REASONING, args.reasoning_limit, ["fp32", *grid.values()]),
        "qwen2": (qwen2_runs, (PPL_TASK,), 4, ["fp32", *qwen2]),
    }
    for name in filter(None, args.run.split(",")):
        folder, tasks, limit, recipes = sweeps[name]
        run_sweep([RunSpec(args.model, r, EvalSettings(tasks, limit=limit)) for r in recipes], folder)

    ppl, reasoning = _results(ppl_runs), _results(reasoning_runs)
    baseline = ppl["fp32"].metric(PPL_TASK, PPL_KEY).value
    rows = [["none (fp32)", "0", f"{baseline:.2f}", "-", "-", "-", *_reasoning_cells(reasoning.get("fp32"))]]
    series: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    for (method, pattern), recipe in grid.items():
        record = ppl.get(_canonical(recipe))
        if record is None:
            continue
        step = record.compression.steps[0]
        value = record.metric(PPL_TASK, PPL_KEY).value
        rows.append([method, str(pattern), f"{value:.2f}", f"{step['stats']['sparsity']:.4f}",
                     f"{step['seconds']:.1f}", f"{step['peak_rss_mb']:.0f}",
                     *_reasoning_cells(reasoning.get(_canonical(recipe)))])
        if not isinstance(pattern, str):
            series[method].append((pattern, value))
    header = ["method", "sparsity", f"ppl ({PPL_TASK}, 4x2048)", "sparsity reached", "prune s",
              "peak RSS MB", *[f"{t} acc / F1" for t in REASONING]]
    table = tabulate(rows, header, tablefmt="github", disable_numparse=True)
    note = (f"\nReasoning columns: accuracy / macro F1 on the first {args.reasoning_limit} "
            f"documents of each task. {NM_NOTE}.\n")
    write_text_atomic(out / "pruning.md", table + "\n" + note)
    print(table + "\n" + note)
    line_plot(series, out / "pruning.png", xlabel="unstructured sparsity",
              ylabel="wikitext-2 perplexity (log)", log_y=True,
              title=f"{args.model}: pruning without retraining, fp32 = {baseline:.2f}")

    srows = []
    for recipe in ("fp32", *STRUCTURED):
        record = ppl.get(_canonical(recipe))
        if record is None:
            continue
        compression, timing = record.compression, record.timing
        speedup = timing.prefill_tokens_per_s / ppl["fp32"].timing.prefill_tokens_per_s
        srows.append([recipe, f"{compression.params_total / 1e6:.1f}",
                      f"{compression.checkpoint_mb:.0f}", f"{timing.prefill_tokens_per_s:.0f}",
                      f"{speedup:.2f}x", f"{record.metric(PPL_TASK, PPL_KEY).value:.2f}"])
    stable = tabulate(srows, ["recipe", "params M", "on disk MB", "prefill tok/s", "vs fp32",
                              f"ppl ({PPL_TASK}, 4x2048)"], tablefmt="github", disable_numparse=True)
    write_text_atomic(out / "structured.md", stable + "\n")
    print(stable)

    qwen = _results(qwen2_runs)
    qrows = []
    for pruning in QWEN2_PRUNING:
        cells = [pruning]
        for suffix in ("", "+int8", "+nf4"):
            record = qwen.get(_canonical(f"{pruning}{suffix}"))
            cells.append("-" if record is None else
                         f"{record.metric(PPL_TASK, PPL_KEY).value:.2f} "
                         f"({record.compression.size_mb:.0f} MB)")
        qrows.append(cells)
    qtable = tabulate(qrows, ["pruning recipe", "pruned only", "+ int8", "+ nf4"],
                      tablefmt="github", disable_numparse=True)
    write_text_atomic(out / "qwen2_pruning.md", qtable + "\n")
    print(qtable)


def _canonical(recipe: str) -> str:
    from compbench.compressors import parse_recipe

    return str(parse_recipe(recipe))


def _results(folder: Path) -> dict:
    """The finished runs in `folder` by canonical recipe."""
    from compbench.reports.store import load_results

    return {r.recipe: r for r in load_results(folder) if r.ok} if folder.is_dir() else {}


def _reasoning_cells(record) -> list[str]:
    if record is None:
        return ["-"] * len(REASONING)
    return [f"{record.metric(t, 'acc,none').value:.2f} / {record.metric(t, 'f1,none').value:.2f}"
            for t in REASONING]


if __name__ == "__main__":
    main()
