"""`compbench gate`: the CI regression gate; exit 1 when a compressed model regressed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compbench.cli.common import add_run_options, executor_from, store_from, warn
from compbench.errors import CompbenchError


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="CI regression gate: fail when a compressed model regressed",
                       description="Check each compressed run's recovery ratio (compressed / "
                       "uncompressed; inverted for perplexity) against the thresholds in the "
                       "baseline file (default 0.95), and warn where an absolute value moved "
                       "from the recorded one. Exit 0: all hold; 1: any fell short; 2: bad input.")
    p.add_argument("--baseline", required=True, help="gate baseline YAML (thresholds and recorded values)")
    p.add_argument("--results", nargs="+", help="results folder(s) to check")
    p.add_argument("--sweep", help="run this sweep file first, then check its results")
    p.add_argument("--output-dir", help="results folder for --sweep (default: the file's)")
    p.add_argument("--update", action="store_true", help="record the results' values in the "
                   "baseline file (thresholds kept) instead of checking")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from compbench.records.index import load_results
    from compbench.reports.gate import gate, load_baseline, updated

    baseline = load_baseline(Path(args.baseline), must_exist=not args.update)
    if args.sweep:
        folders = [_run_sweep(args, baseline)]
    elif args.results:
        folders = [Path(d) for d in args.results]
    else:
        raise CompbenchError("give --results DIR (results to check) or --sweep FILE (run it, then check)")
    records = load_results(folders, warn=warn)
    if args.update:
        updated(baseline, records).save()
        print(f"wrote {baseline.path}: {len(baseline.runs)} run(s) recorded")
        return 0
    result = gate(records, baseline)
    rows = [[c.model, c.recipe, c.metric, f"{c.uncompressed:.4g}", f"{c.compressed:.4g}",
             f"{c.recovery:.3f}", f"{c.threshold:.2f}", "ok" if c.passed else "FAIL"] for c in result.checks]
    print(tabulate(rows, ["model", "recipe", "metric", "uncompressed", "compressed", "recovery",
                          "threshold", ""], tablefmt="github", disable_numparse=True))
    for warning in result.warnings:
        warn(warning)
    for failed_run in result.failed_runs:
        print(f"compbench: gate: run failed: {failed_run}", file=sys.stderr)
    short = [c for c in result.checks if not c.passed]
    for check in short:
        print(f"compbench: gate: {check.recipe} {check.metric} recovers {check.recovery:.3f} of "
              f"the uncompressed model, below {check.threshold:.2f} by "
              f"{check.threshold - check.recovery:.3f}",
              file=sys.stderr)
    print(f"gate: {'passed' if result.passed else 'FAILED'} ({len(result.checks) - len(short)} of "
          f"{len(result.checks)} checks hold)")
    return 0 if result.passed else 1


def _run_sweep(args: argparse.Namespace, baseline) -> Path:
    """Run the gate's sweep; its uncompressed run is skipped when the baseline file holds that
    very run (same run key): its recorded values stand in for it."""
    from compbench.orchestration.plan import make_plan
    from compbench.orchestration.runner import run_plan
    from compbench.orchestration.sweep import load_sweep
    from compbench.orchestration.trained import build_presets

    sweep = load_sweep(args.sweep)
    output_dir = Path(args.output_dir) if args.output_dir else sweep.output_dir
    build_presets([spec.model for spec in sweep.specs])
    plan = make_plan(list(sweep.specs), output_dir)
    cached = {r.get("run_key") for r in baseline.runs if r["recipe"] == baseline.baseline_recipe}
    keys = {run.key for run in plan.runs if args.update or str(run.spec.recipe) != baseline.baseline_recipe
            or run.key not in cached}
    if len(keys) < len(plan.runs):
        print(f"gate: the uncompressed ({baseline.baseline_recipe}) run is recorded in "
              f"{baseline.path} with the same run key: not evaluated again")
    failed = run_plan(plan, force=args.force, executor=executor_from(args), store=store_from(args),
                      only=keys)
    if any(r.error_kind == "bad_input" for r in failed):
        raise CompbenchError(failed[0].error)
    return output_dir
