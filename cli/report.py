"""`compbench report`: tables (with the Score) and plots from results folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import warn
from compbench.errors import CompbenchError


def add_parser(sub) -> None:
    from compbench.reports.render import FORMATS
    from compbench.reports.table import TABLES

    p = sub.add_parser("report", help="tables and plots from results folders",
                       description="Read every results JSON under RESULTS_DIR (compbench's, and "
                       "lm-eval's own from `lm_eval --output_path`) and write the tables the "
                       "results support: comparison with Score, metric per method x sparsity, "
                       "size/speed/perplexity per bit-width, accuracy per task vs sparsity; with "
                       "plots beside the markdown. Unreadable files are named and skipped.")
    p.add_argument("results_dir", nargs="+")
    p.add_argument("--output", help="file to write (default: RESULTS_DIR/report.md|.csv|.json)")
    p.add_argument("--baseline", default=None, help="recipe the changes are measured against "
                   "(default: fp32, else an uncompressed cast)")
    p.add_argument("--format", choices=FORMATS, default="md",
                   help="markdown with plots (default), CSV (a file per table) or JSON")
    p.add_argument("--table", action="append", choices=TABLES,
                   help="only this table (repeatable; default: every table the results support)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.set_defaults(func=run)


def _canonical(recipe: str) -> str:
    """A recipe's canonical spelling where it parses (`mixed:5.0` -> `mixed:5`), else as given."""
    from compbench.compressors import parse_recipe

    try:
        return str(parse_recipe(recipe))
    except CompbenchError:
        return recipe


def choose_baseline(records, requested: str | None) -> str:
    """The recipe changes are measured against: `requested`, else fp32, else a cast-only recipe."""
    from compbench.reports.table import is_cast

    recipes = sorted({r.recipe for r in records if r.ok})
    if requested is not None:
        baseline = _canonical(requested)
        if baseline not in recipes:
            raise CompbenchError(f"no finished run of the baseline recipe '{requested}' in the "
                                 f"results; recipes there: {', '.join(recipes) or 'none'}")
        return baseline
    if "fp32" in recipes:
        return "fp32"
    cast_only = [r.recipe for r in records if r.ok and r.artifact.get("recipe", {}).get("steps")
                 and all(is_cast(s) for s in r.artifact["recipe"]["steps"])]
    if cast_only:
        return cast_only[0]
    raise CompbenchError(f"no uncompressed run found to compare with; name one with --baseline "
                         f"(recipes there: {', '.join(recipes) or 'none'})")


def run(args: argparse.Namespace) -> int:
    from compbench.records.index import load_results, load_speed_runs
    from compbench.reports.render import write_report

    folders = [Path(d) for d in args.results_dir]
    records = load_results(folders, warn=warn)
    baseline = choose_baseline(records, args.baseline)
    suffix = {"md": ".md", "csv": ".csv", "json": ".json"}[args.format]
    output = Path(args.output) if args.output else folders[0] / f"report{suffix}"
    try:
        text, written = write_report(records, output, baseline, args.format,
                                     tuple(args.table) if args.table else None,
                                     with_plots=not args.no_plots, speed_runs=load_speed_runs(folders))
    except OSError as exc:
        raise CompbenchError(f"cannot write the report to {output}: {exc.strerror}") from None
    print(text)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
