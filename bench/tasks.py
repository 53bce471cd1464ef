"""Per-task cost and scores of the uncompressed embedded model, one task at a time.

    python bench/tasks.py --limit 0     # full splits: bench/results/tasks_full.md
    python bench/tasks.py               # 50 documents a task: bench/results/tasks_50.md

Each task runs alone, so its wall time is its own: run nothing else on the machine meanwhile.
With a limit, the full-split time is extrapolated from the measured seconds per document and
labelled as an estimate; with `--limit 0` every split is run whole and the time is measured.
Each task's result is written to its own JSON as soon as it ends, so an interrupted run resumes
with the tasks not yet done. Needs the data dir ($COMPBENCH_DATA_DIR or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tabulate import tabulate

TASKS = ("wikitext2_ppl,wikitext2_chunked,mmlu_subset,commonsense_qa,cosmos_qa,logiqa,reclor,"
         "e_kar,kasut_math,sst2")
PERPLEXITY_TASKS = ("wikitext2_ppl", "wikitext2_chunked")
PERPLEXITY_LIMIT = 4  # documents of the perplexity tasks in a limited run: they are long


def _shown(key: str, value) -> bool:
    """Summary metrics only: no stderr, no per-topic F1 (the results JSON has them)."""
    name = key.split(",")[0]
    per_topic = name.startswith("f1_") and name not in ("f1_micro", "f1_macro")
    return key.endswith(",none") and "stderr" not in key and isinstance(value, float) and not per_topic


def run_task(lm, manager, task: str, limit: int | None) -> dict:
    """One task alone: its wall seconds, document counts and metrics."""
    import lm_eval

    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager,
                                  log_samples=False, bootstrap_iters=0)
    return {"task": task, "limit": limit, "seconds": time.perf_counter() - start,
            "n-samples": out["n-samples"][task], "metrics": out["results"][task]}


def table_row(record: dict) -> list[str]:
    from compbench.tasks.catalog import task_metadata

    task, counts, metrics = record["task"], record["n-samples"], record["metrics"]
    key = task_metadata(task).get("headline", "acc") + ",none"  # the task YAML's headline
    others = ", ".join(f"{k.split(',')[0]} {v:.3f}" for k, v in metrics.items()
                       if _shown(k, v) and k != key)
    minutes = record["seconds"] / 60
    full = minutes / counts["effective"] * counts["original"]
    return [task, str(counts["effective"]), str(counts["original"]), f"{metrics[key]:.3f}",
            key.split(",")[0], others, f"{minutes:.1f}",
            f"{full:.1f}" if counts["effective"] < counts["original"] else "(measured)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=50,
                        help=f"documents per classification task ({PERPLEXITY_LIMIT} for the "
                        "perplexity tasks); 0 runs every split whole")
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default="bench/results")
    args = parser.parse_args()

    from lm_eval.tasks import TaskManager

    from compbench.core.io import set_data_dir, write_json_atomic, write_text_atomic
    from compbench.evaluation.lm_model import CompressedLM
    from compbench.tasks import TASKS_DIR

    if args.data_dir:
        set_data_dir(args.data_dir)
    name = f"tasks_{args.limit or 'full'}"
    folder = Path(args.output_dir) / name
    lm = manager = None
    records = []
    for task in args.tasks.split(","):
        path = folder / f"{task}.json"
        if path.is_file():
            print(f"{task}: done already ({path})", flush=True)
        else:
            if lm is None:
                lm = CompressedLM(pretrained=args.model, recipe="fp32")
                manager = TaskManager(include_path=str(TASKS_DIR),
                                      metadata={"pretrained": args.model})
            limit = None if not args.limit else (
                PERPLEXITY_LIMIT if task in PERPLEXITY_TASKS else args.limit)
            write_json_atomic(path, run_task(lm, manager, task, limit))
        records.append(json.loads(path.read_text()))
        print(table_row(records[-1]), flush=True)
    header = ["task", "docs run", "docs in split", "score", "metric", "other metrics",
              "minutes", "full split, est. min"]
    table = tabulate([table_row(r) for r in records], header, tablefmt="github",
                     disable_numparse=True)
    write_text_atomic(Path(args.output_dir) / f"{name}.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
