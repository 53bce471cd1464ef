"""compbench's evaluation speed against stock lm-eval, and against this machine's matmul rate.

    python bench/eval_speed.py                 # bench/results/eval_speed.md (+ .json)
    python bench/eval_speed.py --limit 20 --rounds 1 --skip-rate   # a quick look

Part 1, throughput: one checkpoint folder (the embedded model's materialized checkpoint by
default, a `save_pretrained` folder as `compbench export` writes) is loaded twice in this
process, by stock lm-eval (`HFLM`, what `lm_eval --model hf` builds) and by compbench's
`compressed` model, at the same dtype, batch size and window. Each task runs under both, in
alternating order, `--rounds` times; a task's time is the median of its rounds. The metrics of
the two must be identical (exact for accuracies and F1, 1e-6 relative for perplexities, which
sum float log-probabilities in another order); the table says so per task.

Part 2, matmul rate: the model's weight matmuls (every Linear and the LM head, at 2048 tokens)
are timed in float32 and bfloat16 to give this machine's rate in FLOP/s; `wikitext2_chunked`
(`--chunks` chunks of 2048 tokens, after one untimed chunk that tokenizes the split and warms
the kernels) is then evaluated by `compressed` in each dtype. Its rate is given two ways: the
weight matmuls alone (2 x tokens x weights), and with attention's two products under the causal
mask added (2 x 2 x d x T(T+1)/2 per query head and layer), the usual model-FLOPs count.

Run nothing else on the machine meanwhile. Every measurement is written to the JSON as soon as
it ends, so an interrupted run resumes where it stopped. Needs the data dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tabulate import tabulate

TASKS = "cosmos_qa,logiqa,reclor,kasut_math,commonsense_qa,wikitext2_ppl"
DOC_LIMITS = {"wikitext2_ppl": 4}  # documents of the long tasks (articles of ~2,000-20,000 tokens)
RECIPE_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16"}
RATE_TOKENS = 2048


def evaluate_once(lm, manager, task: str, limit: int) -> tuple[float, dict]:
    """Wall seconds and metrics of one task under one model."""
    import lm_eval

    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager,
                                  log_samples=False, bootstrap_iters=0)
    return time.perf_counter() - start, out["results"][task]


def same_metrics(stock: dict, fast: dict) -> bool:
    """Accuracies and F1 equal; perplexities (sums of float log-probabilities) within 1e-6."""
    for key, value in stock.items():
        if not isinstance(value, float) or "stderr" in key:
            continue
        other = fast.get(key)
        tolerance = 1e-6 * abs(value) if "perplexity" in key or "bits_per_byte" in key else 0.0
        if other is None or abs(other - value) > tolerance:
            return False
    return True


def weight_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of every weight matmul of a forward pass: the Linear layers and the LM head."""
    import torch

    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def matmul_rate(shapes: list[tuple[int, int]], dtype, tokens: int = RATE_TOKENS, repeats: int = 3) -> float:
    """FLOP/s of torch matmuls of the model's shapes at `tokens` rows: the best of `repeats`
    passes over all shapes (one pass is the work of one forward's weight matmuls)."""
    import torch

    inputs = {n: torch.randn(tokens, n, dtype=dtype) for n, _ in set(shapes)}
    weights = [torch.randn(m, n, dtype=dtype) for n, m in shapes]
    flops = sum(2 * tokens * n * m for n, m in shapes)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first pass warms the kernels
            start = time.perf_counter()
            for (n, _), weight in zip(shapes, weights, strict=True):
                torch.nn.functional.linear(inputs[n], weight)
            best = min(best, time.perf_counter() - start)
    return flops / best


def attention_flops(config, tokens: int) -> int:
    """FLOPs of attention's score and value products over one causal sequence: query i attends
    to i + 1 keys, 2 FLOPs a multiply-add, two products."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_head = 2 * 2 * head_dim * tokens * (tokens + 1) // 2
    return per_head * config.num_attention_heads * config.num_hidden_layers


def checkpoint_folder(model: str) -> str:
    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source

    return resolve_source(get_preset(model))


def throughput(args, folder: str, done: dict, save) -> None:
    from lm_eval.models.huggingface import HFLM

    from compbench.evaluation.lm_model import CompressedLM
    from compbench.evaluation.task_manager import task_manager

    tasks = args.tasks.split(",")
    manager = task_manager(tasks=tuple(tasks), pretrained=folder)
    models = {}
    for task in tasks:
        limit = DOC_LIMITS.get(task, args.limit)
        for round_index in range(args.rounds):
            order = ("stock", "compbench") if round_index % 2 == 0 else ("compbench", "stock")
            for which in order:
                key = f"{task}/{which}/{round_index}"
                if key in done:
                    continue
                if which not in models:
                    models[which] = (
                        HFLM(pretrained=folder, dtype=args.dtype, batch_size=args.batch_size,
                             max_length=args.max_length, device=args.device)
                        if which == "stock" else
                        CompressedLM(pretrained=folder, recipe=RECIPE_OF_DTYPE[args.dtype],
                                     batch_size=args.batch_size, max_length=args.max_length,
                                     device=args.device))
                seconds, metrics = evaluate_once(models[which], manager, task, limit)
                done[key] = {"seconds": seconds, "metrics": metrics, "limit": limit}
                save()
                print(f"{key}: {seconds:.1f} s", flush=True)


def rates(args, folder: str, done: dict, save) -> None:
    import torch

    from compbench.evaluation.lm_model import CompressedLM
    from compbench.evaluation.task_manager import task_manager

    manager = task_manager(tasks=("wikitext2_chunked",), pretrained=folder)
    for dtype in ("float32", "bfloat16"):
        key = f"rate/{dtype}"
        if key in done:
            continue
        lm = CompressedLM(pretrained=folder, recipe=RECIPE_OF_DTYPE[dtype], device=args.device)
        shapes = weight_shapes(lm.model)
        matmul = matmul_rate(shapes, getattr(torch, dtype))
        evaluate_once(lm, manager, "wikitext2_chunked", 1)  # tokenizes the split, warms the kernels
        seconds, metrics = evaluate_once(lm, manager, "wikitext2_chunked", args.chunks)
        weights = 2 * RATE_TOKENS * args.chunks * sum(n * m for n, m in shapes)
        attention = args.chunks * attention_flops(lm.model.config, RATE_TOKENS)
        done[key] = {"matmul_flops_per_s": matmul, "eval_seconds": seconds, "chunks": args.chunks,
                     "weight_flops_per_s": weights / seconds,
                     "model_flops_per_s": (weights + attention) / seconds,
                     "perplexity": metrics["perplexity,none"]}
        save()
        print(f"{key}: matmul {matmul / 1e9:.0f} GFLOP/s, eval {weights / seconds / 1e9:.0f} GFLOP/s "
              "(weights)", flush=True)
        del lm


def report(args, done: dict) -> str:
    from compbench.core.environment import environment

    rows = []
    for task in args.tasks.split(","):
        runs = {w: [done[k] for k in done if k.startswith(f"{task}/{w}/")] for w in ("stock", "compbench")}
        if not runs["stock"] or not runs["compbench"]:
            continue
        stock = statistics.median(r["seconds"] for r in runs["stock"])
        fast = statistics.median(r["seconds"] for r in runs["compbench"])
        identical = all(same_metrics(s["metrics"], f["metrics"])
                        for s in runs["stock"] for f in runs["compbench"])
        rows.append([task, runs["stock"][0]["limit"], f"{stock:.1f}", f"{fast:.1f}",
                     f"{stock / fast:.2f}x", "yes" if identical else "NO"])
    machine = environment()["machine"]
    lines = [f"Machine: {machine['processor']}, {machine['torch_threads']} threads, "
             f"{' '.join(machine['cpu_flags'])}; dtype {args.dtype}, batch size {args.batch_size}, "
             f"median of {args.rounds} interleaved rounds.", "",
             tabulate(rows, ["task", "docs", "stock lm-eval s", "compbench s", "speed-up",
                             "identical metrics"], tablefmt="github", disable_numparse=True)]
    rate_rows = [[dtype, f"{r['matmul_flops_per_s'] / 1e9:.0f}", f"{r['eval_seconds'] / r['chunks']:.2f}",
                  f"{r['weight_flops_per_s'] / 1e9:.0f}",
                  f"{100 * r['weight_flops_per_s'] / r['matmul_flops_per_s']:.0f}%",
                  f"{r['model_flops_per_s'] / 1e9:.0f}",
                  f"{100 * r['model_flops_per_s'] / r['matmul_flops_per_s']:.0f}%", f"{r['perplexity']:.3f}"]
                 for dtype in ("float32", "bfloat16") if (r := done.get(f"rate/{dtype}"))]
    if rate_rows:
        lines += ["", tabulate(rate_rows, ["dtype", "matmul GFLOP/s", "s per 2048-token chunk",
                                           "weights GFLOP/s", "of matmul rate",
                                           "with attention GFLOP/s", "of matmul rate", "perplexity"],
                               tablefmt="github", disable_numparse=True)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m",
                        help="a preset or a checkpoint folder (default: the embedded model)")
    parser.add_argument("--tasks", default=TASKS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=50,
                        help="documents per task (wikitext2_ppl: 4 articles); default 50")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--dtype", choices=sorted(RECIPE_OF_DTYPE), default="float32")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunks", type=int, default=4,
                        help="wikitext2_chunked chunks of 2048 tokens for the matmul-rate part")
    parser.add_argument("--skip-rate", action="store_true", help="leave out the matmul-rate part")
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default="bench/results")
    args = parser.parse_args()

    from compbench.core.io import set_data_dir, write_json_atomic, write_text_atomic

    if args.data_dir:
        set_data_dir(args.data_dir)
    out = Path(args.output_dir) / "eval_speed.json"
    settings = {k: v for k, v in vars(args).items() if k not in ("data_dir", "output_dir", "skip_rate")}
    stored = json.loads(out.read_text()) if out.is_file() else {}
    if stored.get("settings") != settings:  # another configuration: its timings do not mix
        stored = {"settings": settings, "runs": {}}
    done = stored["runs"]

    def save() -> None:
        write_json_atomic(out, stored)

    folder = checkpoint_folder(args.model)
    throughput(args, folder, done, save)
    if not args.skip_rate:
        rates(args, folder, done, save)
    table = report(args, done)
    write_text_atomic(out.with_suffix(".md"), table)
    print(table)


if __name__ == "__main__":
    main()
