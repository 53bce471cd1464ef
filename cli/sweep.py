"""`compbench sweep`: run a sweep file (a study's whole grid), then write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import add_run_options, run_and_summarize


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep file: a study's whole grid, then its report",
                       description="Run every (model, recipe, seed) of a sweep file (see sweeps/), "
                       "each compressed once and evaluated on all the file's tasks; finished runs "
                       "are skipped, so an interrupted sweep resumes. Writes one results JSON per "
                       "run and OUTPUT_DIR/report.md with its tables and plots.")
    p.add_argument("file", help="sweep YAML file, e.g. sweeps/wanda.yaml")
    p.add_argument("--output-dir", help="results folder (default: the file's output_dir, else "
                   "results/<name>)")
    p.add_argument("--original", action="store_true", help="run the study's original_models (GPU "
                   "sized) instead of its models")
    p.add_argument("--dry-run", action="store_true", help="validate the file and list its runs")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compbench.orchestration.plan import make_plan
    from compbench.orchestration.sweep import load_sweep
    from compbench.orchestration.trained import build_presets

    sweep = load_sweep(args.file, original=args.original)
    output_dir = Path(args.output_dir) if args.output_dir else sweep.output_dir
    print(f"sweep {sweep.name}: {len(sweep.specs)} run(s) -> {output_dir}"
          + (f"\n  {sweep.description}" if sweep.description else ""))
    if args.dry_run:
        for spec in sweep.specs:
            print(f"  {spec.model} {spec.recipe}")
        return 0
    build_presets([spec.model for spec in sweep.specs])
    plan = make_plan(list(sweep.specs), output_dir)
    return run_and_summarize(plan, args, sweep.baseline, report=output_dir / "report.md")
