"""What the commands share: the parser class with one-line errors, option types and option
groups, the executor and store a command's flags choose, and running a plan then printing its
comparison table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RECIPE_HELP = ("compression recipe: steps joined by '+', arguments by ':', e.g. 'fp32', 'nf4', "
               "'nf4:double_quant=true', 'magnitude:0.5:scope=layer', 'wanda:0.5+gptq:bits=4', or "
               "a YAML recipe file (see `compbench methods`)")


class Parser(argparse.ArgumentParser):
    """argparse with compbench's one-line errors (no usage block): exit 2, what is wrong."""

    def error(self, message: str):
        self.exit(2, f"compbench: error: {self.prog.removeprefix('compbench ')}: {message}\n")


def limit(text: str) -> int | float | dict[str, float]:
    """--limit: a document count, or a fraction of each task when below 1; or per task,
    `TASK=N[,TASK=N]` (the tasks not named are evaluated whole; checked against --tasks later)."""
    from compbench.errors import CompbenchError
    from compbench.evaluation.settings import document_limit

    pairs = [part.split("=", 1) for part in text.split(",")] if "=" in text else [["", text]]
    values = {}
    for task, number in pairs:
        try:
            values[task.strip()] = document_limit(float(number))
        except (ValueError, CompbenchError):
            where = f"{task.strip()}: " if task else ""
            raise argparse.ArgumentTypeError(
                f"{where}expected a whole number of documents >= 1 or a fraction between 0 and 1 "
                f"(per task: TASK=N,TASK=N), got '{number.strip()}'") from None
    return values if "=" in text else values[""]


def positive_int(text: str) -> int:
    """--batch-size, --max-length: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def batch_size(text: str) -> int | str:
    """--batch-size: a whole number >= 1, or auto."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got '{text}'")
    return int(text)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder of local dataset copies laid out as "
                        "<dataset>/<split>.jsonl (default: $COMPBENCH_DATA_DIR, else the hub)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that runs evaluations: resume, executor, store, data dir."""
    p.add_argument("--force", action="store_true", help="rerun even if results exist")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at once on this machine, each with its share of the CPU threads")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes (default) or Ray tasks (pip install 'compbench[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a "
                   "local Ray instance for this sweep)")
    p.add_argument("--ray-cpus", type=positive_int, default=1, help="CPUs each Ray task declares")
    p.add_argument("--ray-gpus", type=float, default=0, help="GPUs each Ray task declares")
    p.add_argument("--ray-memory-gb", type=float, default=None, help="memory each Ray task declares")
    p.add_argument("--store", default=None, help="models store (default: $COMPBENCH_STORE, else "
                   "the user cache dir)")
    p.add_argument("--no-store", action="store_true", help="compress every run afresh, store nothing")
    add_data_dir(p)


def warn(message: str) -> None:
    print(f"compbench: warning: {message}", file=sys.stderr)


def executor_from(args: argparse.Namespace):
    """The executor the command's flags choose: local processes, or Ray tasks."""
    from compbench.orchestration.executors import LocalExecutor, RayExecutor

    if getattr(args, "executor", "local") == "ray":
        return RayExecutor(address=args.ray_address, cpus=args.ray_cpus, gpus=args.ray_gpus,
                           memory_gb=args.ray_memory_gb)
    return LocalExecutor(jobs=getattr(args, "jobs", 1))


def store_from(args: argparse.Namespace) -> Path | None:
    """The models store the command's flags choose (None: --no-store)."""
    from compbench.artifacts.store import default_store_dir

    if getattr(args, "no_store", False):
        return None
    return Path(args.store) if getattr(args, "store", None) else default_store_dir()


def run_and_summarize(plan, args: argparse.Namespace, baseline: str, report: Path | None = None) -> int:
    """Run the plan (skipping finished runs), print the comparison table of its results (and
    write the full report to `report`); exit 1 when a run crashed, 2 when one had bad input."""
    from compbench.orchestration.runner import run_plan
    from compbench.records.index import read_record
    from compbench.reports.render import write_report
    from compbench.reports.table import build_tables

    failed = run_plan(plan, force=args.force, executor=executor_from(args), store=store_from(args))
    records = [read_record(run.path) for run in plan.runs if run.path.exists()]
    if report is not None:
        text, written = write_report(records, report, baseline)
        print("\n" + text)
        print(f"wrote {', '.join(str(p) for p in written)}")
    elif any(r.ok for r in records):
        from tabulate import tabulate

        table = build_tables(records, baseline, only=("comparison",))[0]
        print("\n" + tabulate(table.rows, table.header, tablefmt="github", disable_numparse=True))
    if failed:
        print(f"compbench: {len(failed)} of {len(plan.runs)} run(s) failed: "
              + ", ".join(r.recipe for r in failed), file=sys.stderr)
        for record in failed:
            print(f"compbench: error: {record.error}", file=sys.stderr)
        return 2 if any(r.error_kind == "bad_input" for r in failed) else 1
    return 0
