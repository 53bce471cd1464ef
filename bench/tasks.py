"""Per-task cost and scores of the uncompressed embedded model, one task at a time.

    python bench/tasks.py --output bench/results/tasks.md

Each task runs alone (so its wall time is its own) with a document limit; the full-split time
is extrapolated from the measured seconds per document and labelled as an estimate. Needs the
data dir ($COMPBENCH_DATA_DIR or --data-dir).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tabulate import tabulate

DEFAULT_LIMITS = {"wikitext2_ppl": 4, "wikitext2_chunked": 4}  # long documents
HEADLINES = {"wikitext2_ppl": "word_perplexity,none", "wikitext2_chunked": "perplexity,none",
             "kasut_math": "f1_macro,none"}


def _shown(key: str, value) -> bool:
    """Summary metrics only: no stderr, no per-topic F1 (the results JSON has them)."""
    name = key.split(",")[0]
    per_topic = name.startswith("f1_") and name not in ("f1_micro", "f1_macro")
    return key.endswith(",none") and "stderr" not in key and isinstance(value, float) and not per_topic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=50, help="documents per classification task")
    parser.add_argument("--tasks", default="wikitext2_ppl,wikitext2_chunked,mmlu_subset,"
                        "commonsense_qa,cosmos_qa,logiqa,reclor,e_kar,kasut_math,sst2")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", default="bench/results/tasks.md")
    args = parser.parse_args()

    import lm_eval
    from lm_eval.tasks import TaskManager

    from compbench.harness.lm_model import CompressedLM
    from compbench.tasks import TASKS_DIR
    from compbench.tasks.data import set_data_dir

    if args.data_dir:
        set_data_dir(args.data_dir)
    lm = CompressedLM(pretrained=args.model, recipe="fp32")
    manager = TaskManager(include_path=str(TASKS_DIR), metadata={"pretrained": args.model})
    rows = []
    for task in args.tasks.split(","):
        limit = DEFAULT_LIMITS.get(task, args.limit)
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager,
                                      log_samples=False, bootstrap_iters=0)
        seconds = time.perf_counter() - start
        counts = out["n-samples"][task]
        metrics = out["results"][task]
        key = HEADLINES.get(task, "acc,none")
        full_minutes = seconds / counts["effective"] * counts["original"] / 60
        others = ", ".join(f"{k.split(',')[0]} {v:.3f}" for k, v in metrics.items()
                           if _shown(k, v) and k != key)
        rows.append([task, counts["effective"], counts["original"], f"{metrics[key]:.3f}",
                     key.split(",")[0], others, f"{seconds:.0f}", f"{full_minutes:.0f}"])
        print(rows[-1], flush=True)
    header = ["task", "docs run", "docs in split", "score", "metric", "other metrics",
              "seconds", "full split, est. min"]
    table = tabulate(rows, header, tablefmt="github", disable_numparse=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
