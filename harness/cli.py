"""The `compbench` command line: evaluate, compare and export compressed models."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from pathlib import Path

from compbench.errors import CompbenchError
from compbench.model_zoo.presets import DTYPE_HELP, DTYPES

EXAMPLES = """\
examples:
  compbench eval --model smollm2-135m --recipe nf4 --tasks wikitext2_ppl --limit 4
  compbench sweep sweeps/wanda.yaml --jobs 2
  compbench gate --baseline gate/baseline.yaml --sweep gate/sweep.yaml
  compbench eval --model smollm2-135m --recipe fp32 --recipe int8 --recipe magnitude:0.5
  compbench report results/
  compbench lm-eval --model compressed --model_args pretrained=smollm2-135m,recipe=nf4 \\
      --tasks wikitext2_ppl --limit 4
  compbench export --model smollm2-135m --recipe int8 exported/smollm2-int8
  compbench eval --recipe gptq:bits=4:group_size=64 --recipe rtn:bits=4 --tasks wikitext2_chunked
  compbench sensitivity --model smollm2-135m --method magnitude:0.5:scope=layer
  compbench finetune --recipe nf4:double_quant=true --dataset kasut_math --max-steps 200
  compbench finetune --recipe nf4 --head sft --mix gsm8k=1.0,commonsense_qa=0.5 --max-steps 500
  compbench distill --teacher smollm2-135m --student-recipe structured:ffn=0.25 --head causal
"""

RECIPE_HELP = ("compression recipe: steps joined by '+', arguments by ':', e.g. 'fp32', 'nf4', "
               "'nf4:double_quant=true', 'magnitude:0.5:scope=layer', 'wanda:0.5+gptq:bits=4', or "
               "a YAML recipe file (see `compbench methods`)")


def _limit(text: str) -> int | float:
    """--limit: a document count, or a fraction of each task when below 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return int(value) if value >= 1 and value.is_integer() else value


def _positive_int(text: str) -> int:
    """--batch-size, --max-length: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _batch_size(text: str) -> int | str:
    """--batch-size: a whole number >= 1, or auto."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got '{text}'")
    return int(text)


class _Parser(argparse.ArgumentParser):
    """argparse with compbench's one-line errors (no usage block): exit 2, what is wrong."""

    def error(self, message: str):
        self.exit(2, f"compbench: error: {self.prog.removeprefix('compbench ')}: {message}\n")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder of local dataset copies laid out as "
                        "<dataset>/<split>.jsonl (default: $COMPBENCH_DATA_DIR, else the hub)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that runs evaluations: resume, executor, store, data dir."""
    p.add_argument("--force", action="store_true", help="rerun even if results exist")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="runs at once on this machine, each with its share of the CPU threads")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes (default) or Ray tasks (pip install 'compbench[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a "
                   "local Ray instance for this sweep)")
    p.add_argument("--ray-cpus", type=_positive_int, default=1, help="CPUs each Ray task declares")
    p.add_argument("--ray-gpus", type=float, default=0, help="GPUs each Ray task declares")
    p.add_argument("--ray-memory-gb", type=float, default=None, help="memory each Ray task declares")
    p.add_argument("--store", default=None, help="compressed-model store (default: "
                   "$COMPBENCH_STORE, else the user cache dir)")
    p.add_argument("--no-store", action="store_true", help="compress every run afresh, store nothing")
    _add_data_dir(p)


def _quiet_libraries() -> None:
    """Keep library chatter out of the output: bitsandbytes casts, transformers notices,
    torchao's failed loads of its CUDA-only kernels on a CPU machine, torch's deprecation notes
    about the enums torchao registers and about the FX tracing llm-compressor does. Errors
    still show."""
    warnings.filterwarnings("ignore")
    for name in ("transformers", "bitsandbytes", "accelerate", "datasets", "lm_eval", "lm-eval",
                 "torchao", "torch.utils._pytree", "torch.fx._symbolic_trace"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cmd_eval(args: argparse.Namespace) -> int:
    from compbench.compressors import parse_recipe
    from compbench.harness.evaluate import EvalSettings, check_include_paths
    from compbench.harness.runner import RunSpec
    from compbench.model_zoo.presets import choose_device, get_preset

    get_preset(args.model)
    choose_device(args.device)
    recipes = [str(parse_recipe(r)) for r in args.recipe]  # validate all before running any
    include_paths = check_include_paths(tuple(args.include_path or ()))
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    _check_tasks(tasks, include_paths)
    settings = EvalSettings(tasks=tasks, limit=args.limit, batch_size=args.batch_size,
                            max_length=args.max_length, include_paths=include_paths)
    specs = [RunSpec(model=args.model, recipe=r, settings=settings, device=args.device,
                     dtype=args.dtype, adapter=args.adapter) for r in recipes]
    return _run_and_summarize(specs, Path(args.output_dir), args, baseline=recipes[0])


def _run_and_summarize(specs, output_dir: Path, args: argparse.Namespace, baseline: str,
                       report: Path | None = None) -> int:
    """Run the specs (skipping finished ones), print the comparison table of their results (and
    write the full report to `report`); exit 1 when a run crashed, 2 when one had bad input."""
    from compbench.harness.runner import plan, run_sweep
    from compbench.reports.render import write_report
    from compbench.reports.store import read_record
    from compbench.reports.table import build_tables

    failed = run_sweep(specs, output_dir, force=args.force, executor=_executor(args), store=_store(args))
    records = [read_record(run.path) for run in plan(specs, output_dir) if run.path.exists()]
    if report is not None:
        text, written = write_report(records, report, baseline)
        print("\n" + text)
        print(f"wrote {', '.join(str(p) for p in written)}")
    elif any(r.ok for r in records):
        from tabulate import tabulate

        table = build_tables(records, baseline, only=("comparison",))[0]
        print("\n" + tabulate(table.rows, table.header, tablefmt="github", disable_numparse=True))
    if failed:
        print(f"compbench: {len(failed)} of {len(specs)} run(s) failed: "
              + ", ".join(r.recipe for r in failed), file=sys.stderr)
        for record in failed:
            print(f"compbench: error: {record.error}", file=sys.stderr)
        return 2 if any(r.error_kind == "bad_input" for r in failed) else 1
    return 0


def _executor(args: argparse.Namespace):
    from compbench.harness.executors import LocalExecutor, RayExecutor

    if getattr(args, "executor", "local") == "ray":
        return RayExecutor(address=args.ray_address, cpus=args.ray_cpus, gpus=args.ray_gpus,
                           memory_gb=args.ray_memory_gb)
    return LocalExecutor(jobs=getattr(args, "jobs", 1))


def _store(args: argparse.Namespace) -> Path | None:
    from compbench.harness.store import default_store_dir

    if getattr(args, "no_store", False):
        return None
    return Path(args.store) if getattr(args, "store", None) else default_store_dir()


def cmd_sweep(args: argparse.Namespace) -> int:
    from compbench.harness.sweep import load_sweep

    sweep = load_sweep(args.file, original=args.original)
    output_dir = Path(args.output_dir) if args.output_dir else sweep.output_dir
    print(f"sweep {sweep.name}: {len(sweep.specs)} run(s) -> {output_dir}"
          + (f"\n  {sweep.description}" if sweep.description else ""))
    if args.dry_run:
        for spec in sweep.specs:
            print(f"  {spec.model} {spec.recipe}")
        return 0
    return _run_and_summarize(list(sweep.specs), output_dir, args, sweep.baseline,
                              report=output_dir / "report.md")


def _check_tasks(tasks: tuple[str, ...], include_paths: tuple[str, ...] = ()) -> None:
    from compbench.harness.evaluate import task_index
    from compbench.tasks import TASKS_DIR

    if not tasks:
        raise CompbenchError("no tasks given; e.g. --tasks wikitext2_ppl")
    known = set(task_index(include_paths, tasks))
    unknown = [t for t in tasks if t not in known]
    if unknown:
        ours = sorted(p.stem for p in TASKS_DIR.glob("[!_]*.yaml"))
        raise CompbenchError(f"unknown task(s) {', '.join(unknown)}; compbench tasks: "
                             f"{', '.join(ours)} (any lm-eval task name, or one of yours with "
                             "--include-path, also works)")


def _warn(message: str) -> None:
    print(f"compbench: warning: {message}", file=sys.stderr)


def choose_baseline(records, requested: str | None) -> str:
    """The recipe changes are measured against: `requested`, else fp32, else a cast-only recipe."""
    from compbench.reports.table import CAST_METHODS

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
                 and all(s["method"] in CAST_METHODS for s in r.artifact["recipe"]["steps"])]
    if cast_only:
        return cast_only[0]
    raise CompbenchError(f"no uncompressed run found to compare with; name one with --baseline "
                         f"(recipes there: {', '.join(recipes) or 'none'})")


def cmd_report(args: argparse.Namespace) -> int:
    from compbench.reports.render import write_report
    from compbench.reports.store import load_results

    folders = [Path(d) for d in args.results_dir]
    records = load_results(folders, warn=_warn)
    baseline = choose_baseline(records, args.baseline)
    suffix = {"md": ".md", "csv": ".csv", "json": ".json"}[args.format]
    output = Path(args.output) if args.output else folders[0] / f"report{suffix}"
    try:
        text, written = write_report(records, output, baseline, args.format,
                                     tuple(args.table) if args.table else None,
                                     with_plots=not args.no_plots)
    except OSError as exc:
        raise CompbenchError(f"cannot write the report to {output}: {exc.strerror}") from None
    print(text)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from compbench.reports.gate import gate, load_baseline, updated
    from compbench.reports.store import load_results

    baseline = load_baseline(Path(args.baseline), must_exist=not args.update)
    if args.sweep:
        folders = [_gate_sweep(args, baseline)]
    elif args.results:
        folders = [Path(d) for d in args.results]
    else:
        raise CompbenchError("give --results DIR (results to check) or --sweep FILE (run it, then check)")
    records = load_results(folders, warn=_warn)
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
        _warn(warning)
    for run in result.failed_runs:
        print(f"compbench: gate: run failed: {run}", file=sys.stderr)
    short = [c for c in result.checks if not c.passed]
    for check in short:
        print(f"compbench: gate: {check.recipe} {check.metric} recovers {check.recovery:.3f} of "
              f"the uncompressed model, below {check.threshold:.2f} by "
              f"{check.threshold - check.recovery:.3f}",
              file=sys.stderr)
    print(f"gate: {'passed' if result.passed else 'FAILED'} ({len(result.checks) - len(short)} of "
          f"{len(result.checks)} checks hold)")
    return 0 if result.passed else 1


def _gate_sweep(args: argparse.Namespace, baseline) -> Path:
    """Run the gate's sweep; its uncompressed run is skipped when the baseline file holds that
    very run (same run key): its recorded values stand in for it."""
    from compbench.harness.runner import plan, run_sweep
    from compbench.harness.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    output_dir = Path(args.output_dir) if args.output_dir else sweep.output_dir
    cached = {r.get("run_key") for r in baseline.runs if r["recipe"] == baseline.baseline_recipe}
    specs = [run.spec for run in plan(list(sweep.specs), output_dir)
             if args.update or run.spec.recipe != baseline.baseline_recipe or run.key not in cached]
    if len(specs) < len(sweep.specs):
        print(f"gate: the uncompressed ({baseline.baseline_recipe}) run is recorded in "
              f"{baseline.path} with the same run key: not evaluated again")
    failed = run_sweep(specs, output_dir, force=args.force, executor=_executor(args), store=_store(args))
    if any(r.error_kind == "bad_input" for r in failed):
        raise CompbenchError(failed[0].error)
    return output_dir


def _canonical(recipe: str) -> str:
    """A recipe's canonical spelling where it parses (`mixed:5.0` -> `mixed:5`), else as given."""
    from compbench.compressors import parse_recipe

    try:
        return str(parse_recipe(recipe))
    except CompbenchError:
        return recipe


def cmd_store(args: argparse.Namespace) -> int:
    import datetime

    from tabulate import tabulate

    from compbench.harness.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        entries = store.entries()
        when = lambda t: datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")  # noqa: E731
        print(tabulate([[e.key[:12], e.model, e.recipe, f"{e.size_bytes / 2**20:.1f}", when(e.created_at),
                         when(e.used_at)] for e in entries],
                       ["key", "model", "recipe", "MB on disk", "made", "last used"], tablefmt="github"))
        print(f"{len(entries)} compressed model(s), {sum(e.size_bytes for e in entries) / 2**30:.2f} GiB "
              f"in {store.root}")
    elif args.action == "remove":
        if not args.keys:
            raise CompbenchError("store remove needs KEY prefixes or recipes (see `compbench store list`)")
        entries = store.entries()
        for wanted in args.keys:
            matches = [e for e in entries if e.key.startswith(wanted) or e.recipe == wanted]
            if not matches:
                raise CompbenchError(f"no stored model has key prefix or recipe '{wanted}'")
            for entry in matches:
                store.remove(entry)
                print(f"removed {entry.key[:12]} {entry.model} {entry.recipe}")
    else:
        removed = store.prune(args.unused_days)
        for path in removed:
            print(f"removed {path}")
        print(f"pruned {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {store.root}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from compbench.compressors import parse_recipe
    from compbench.harness.artifact import build
    from compbench.model_zoo.presets import get_preset

    preset = get_preset(args.model)
    recipe = parse_recipe(args.recipe)
    blocked = [str(s) for s in recipe.unexportable_steps()]
    if blocked:
        raise CompbenchError(f"recipe '{recipe}' cannot be exported as a Hugging Face checkpoint: "
                             f"{', '.join(blocked)} has no serialized format that "
                             "from_pretrained reloads")
    out = Path(args.out_dir) if args.out_dir else Path("exported") / export_name(
        preset.name, recipe, args.revision or preset.revision or "main", args.gptq_revision)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise CompbenchError(f"{out} exists and is not an empty folder; choose another folder "
                             "or pass --force")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompbenchError(f"cannot write the checkpoint to {out}: {exc.strerror}") from None
    adapter = None
    if args.merge and not args.adapter:
        raise CompbenchError("--merge needs --adapter DIR (the adapter to merge)")
    if args.adapter:
        from compbench.harness.adapter import check_mergeable, read_adapter

        adapter = read_adapter(args.adapter)
        if args.merge:
            check_mergeable(recipe)
    artifact = build(preset, recipe, device=args.device, dtype=args.dtype,
                     num_labels=adapter.num_labels if adapter else None)
    if adapter is not None and args.merge:
        import dataclasses

        from compbench.harness.adapter import merged

        artifact = dataclasses.replace(artifact, model=merged(artifact, adapter))
    save_checkpoint_atomic(artifact, out, None if args.merge else adapter)
    what = f"recipe {recipe}" + (f" + {adapter.label}" if adapter else "")
    how = (f"lm_eval --model hf --model_args pretrained={out},peft={out}/adapter"
           if adapter and not args.merge else f"lm_eval --model hf --model_args pretrained={out}")
    print(f"wrote {out} ({preset.name}, {what}{', merged' if args.merge else ''}); evaluate it "
          f"with:\n  {how} --tasks …")
    return 0


def save_checkpoint_atomic(artifact, out: Path, adapter=None) -> None:
    """`save_pretrained` into a staging folder beside `out`, then renamed onto it: a kill
    mid-save leaves no half checkpoint under the name, only a staging folder that the next
    export beside it removes. An `adapter` is copied in as `out/adapter`."""
    import os
    import shutil

    from compbench.core.io import remove_stale_temporaries, staging_path

    remove_stale_temporaries(out.parent)
    staging = staging_path(out)
    artifact.model.save_pretrained(staging)
    artifact.tokenizer.save_pretrained(staging)
    if adapter is not None:
        shutil.copytree(adapter.path, staging / "adapter")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)


def export_name(model: str, recipe, revision: str, gptq_revision: str) -> str:
    """The research's checkpoint names: `{model}-{revision}-{gptq_revision}-{bits}bits` for
    GPTQ/RTN recipes, `{model}-{revision}-{recipe}` otherwise."""
    import re

    last = recipe.steps[-1]
    if last.method in ("gptq", "rtn"):
        return f"{model}-{revision}-{gptq_revision}-{last.config.bits}bits"
    return f"{model}-{revision}-" + re.sub(r"[^A-Za-z0-9.=_-]+", "_", str(recipe))


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from compbench.compressors.calibration import Calibrated
    from compbench.compressors.recipe import parse_recipe
    from compbench.compressors.sensitivity import measure_sensitivity
    from compbench.core.io import write_json_atomic
    from compbench.harness.artifact import compression_context
    from compbench.model_zoo.presets import get_preset, load_model

    preset = get_preset(args.model)
    recipe = parse_recipe(args.method)
    if len(recipe.steps) != 1:
        raise CompbenchError(f"--method takes one step, got '{recipe}'")
    try:
        calibration = Calibrated(args.calibration, args.nsamples, args.seqlen, args.seed)
    except ValueError as exc:
        raise CompbenchError(str(exc)) from None
    model, tokenizer = load_model(preset, device=args.device, dtype=args.dtype)
    result = measure_sensitivity(model, compression_context(tokenizer), recipe.steps[0], args.unit,
                                 calibration, use_cache=not args.no_cache)
    from tabulate import tabulate

    rows = sorted(result.delta().items(), key=lambda kv: -kv[1])
    print(f"{preset.name}: perplexity on {calibration.nsamples} x {calibration.seqlen} "
          f"{calibration.calibration} tokens, uncompressed {result.baseline_ppl:.3f}; "
          f"each {args.unit} alone compressed by {recipe}:")
    print(tabulate([(name, result.ppl[name], 100 * delta) for name, delta in rows],
                   headers=[args.unit, "perplexity", "change %"], floatfmt=".2f", tablefmt="github"))
    if args.output:
        write_json_atomic(Path(args.output), result.__dict__)
        print(f"wrote {args.output}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from compbench.compressors import COMPRESSORS

    for name, compressor in sorted(COMPRESSORS.items()):
        options = ", ".join(f"{key}={value}" for key, value in compressor.defaults().items())
        main = getattr(compressor.config_cls, "MAIN_OPTION", None)
        print(f"{name:10s} {compressor.summary}")
        if options:
            print(f"{'':10s}   options: {options}" + (f" (bare first value: {main})" if main else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from compbench.model_zoo import PRESETS

    for preset in PRESETS.values():
        note = "" if preset.task_head == "causal-lm" else "  (scored as a trained classifier)"
        print(f"{preset.name:22s} {preset.source:36s} {preset.dtype:9s} {preset.task_head}{note}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from compbench.tasks.catalog import task_catalog

    rows = [[t.name, t.dataset, t.split, ", ".join(t.metrics),
             "no data dir: hub" if not t.data_dir_set
             else "missing" if t.local_rows is None else f"{t.local_rows} rows",
             ", ".join(str(f) for f in t.local_files)] for t in task_catalog()]
    print(tabulate(rows, ["task", "dataset", "split", "metrics", "local data", "local files"],
                   tablefmt="github"))
    return 0


def cmd_lm_eval(argv: list[str]) -> int:
    """The stock lm_eval CLI, with the `compressed` model and compbench's tasks available beside
    any `--include_path` of the user's (folders joined with ':')."""
    import compbench.harness.lm_model  # noqa: F401  (registers --model compressed)
    from compbench.tasks import TASKS_DIR

    if "--data-dir" in argv:
        from compbench.core.io import set_data_dir

        i = argv.index("--data-dir")
        if i + 1 >= len(argv):
            raise CompbenchError("--data-dir needs a folder")
        set_data_dir(argv[i + 1])
        del argv[i:i + 2]
    _add_compbench_tasks()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except ValueError as exc:
        if not str(exc).startswith("Tasks not found"):
            raise
        ours = sorted(p.stem for p in TASKS_DIR.glob("[!_]*.yaml"))
        raise CompbenchError(f"unknown task(s) {str(exc).split(': ', 1)[1]}; compbench tasks: "
                             f"{', '.join(ours)} (any lm-eval task name also works)") from None
    return 0


def _add_compbench_tasks() -> None:
    """Make lm-eval's CLI index compbench's tasks as well as the user's `--include_path`.

    lm-eval's CLI hands its one `--include_path` string straight to `TaskManager`, so passing
    compbench's folder there would replace the user's; instead the TaskManager the CLI builds
    gets compbench's folder added in front (the user's, later, override same-named tasks), and
    an include path of several folders joined with ':' is split as lm-eval's docs describe."""
    import lm_eval.tasks

    from compbench.tasks import TASKS_DIR

    stock = lm_eval.tasks.TaskManager
    if getattr(stock, "compbench_tasks_added", False):
        return

    class TaskManager(stock):
        compbench_tasks_added = True

        def __init__(self, *args, include_path=None, **kwargs):
            if isinstance(include_path, str):
                include_path = include_path.split(os.pathsep)
            super().__init__(*args, include_path=[str(TASKS_DIR), *(include_path or [])], **kwargs)

    lm_eval.tasks.TaskManager = TaskManager


def build_parser() -> argparse.ArgumentParser:
    from compbench.reports.render import FORMATS
    from compbench.reports.table import TABLES

    parser = _Parser(
        prog="compbench",
        description="Compress small language models with a recipe and measure what it costs: "
                    "perplexity and accuracy (lm-eval), size, speed, memory.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("eval", help="compress a preset with one or more recipes and evaluate each",
                       description="Compress a model preset with each --recipe, evaluate it on "
                       "--tasks with lm-eval, and write one results JSON per run to --output-dir. "
                       "Runs whose results file is already complete are skipped (resume).")
    p.add_argument("--model", default="smollm2-135m",
                   help="model preset (see `compbench models`) or a local checkpoint folder")
    p.add_argument("--recipe", action="append", required=True, help=RECIPE_HELP + "; repeatable")
    p.add_argument("--tasks", default="wikitext2_ppl", help="comma-separated lm-eval task names")
    p.add_argument("--limit", type=_limit, default=None,
                   help="documents per task (an int), or a fraction if < 1")
    p.add_argument("--output-dir", default="results", help="where results JSON files go")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if present)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--batch-size", type=_batch_size, default=1,
                   help="requests (questions, for answers sharing a context) a forward pass; "
                   "auto: the most that fit in half the free memory (the results record it)")
    p.add_argument("--max-length", type=_positive_int, default=None,
                   help="evaluation window in tokens (default: the preset's)")
    p.add_argument("--include-path", action="append", metavar="DIR",
                   help="folder of your own lm-eval task YAMLs, beside compbench's (repeatable)")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter from `compbench finetune` "
                   "(<output-dir>/adapter) loaded onto each compressed model (SFT adapters)")
    _add_run_options(p)
    p.set_defaults(func=cmd_eval)

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
    _add_run_options(p)

    p.set_defaults(func=cmd_sweep)

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
    p.set_defaults(func=cmd_report)

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
    _add_run_options(p)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("store", help="list, remove or prune stored compressed models",
                       description="Compressed models are kept in a store keyed by their "
                       "identity, so a later run or sweep loads them instead of compressing again.")
    p.add_argument("action", choices=("list", "remove", "prune"))
    p.add_argument("keys", nargs="*", help="for remove: key prefixes or recipes")
    p.add_argument("--store", default=None, help="store folder (default: $COMPBENCH_STORE, else "
                   "the user cache dir)")
    p.add_argument("--unused-days", type=float, default=None,
                   help="prune: also remove models not used for this many days")
    p.set_defaults(func=cmd_store)

    from compbench.harness.distill import add_parser as add_distill_parser
    from compbench.harness.finetune import add_parser as add_finetune_parser

    add_finetune_parser(sub, _positive_int, _add_data_dir)
    add_distill_parser(sub, _positive_int, _add_data_dir)

    p = sub.add_parser("export", help="save a compressed model as a Hugging Face checkpoint",
                       description="Compress a preset and save it with save_pretrained, so "
                       "`lm_eval --model hf --model_args pretrained=OUT_DIR` loads it.")
    p.add_argument("--model", default="smollm2-135m", help="model preset or checkpoint folder")
    p.add_argument("--recipe", required=True, help=RECIPE_HELP)
    p.add_argument("out_dir", nargs="?", help="folder to write (default: exported/<name>, named "
                   "{model}-{revision}-{gptq_revision}-{bits}bits for gptq/rtn recipes)")
    p.add_argument("--revision", default=None, help="model revision in the default name "
                   "(default: the preset's, else 'main')")
    p.add_argument("--gptq-revision", default="v1", help="quantization revision in the default "
                   "name of gptq/rtn exports (default: v1)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter from `compbench finetune`: "
                   "saved beside the base as OUT_DIR/adapter, or merged with --merge")
    p.add_argument("--merge", action="store_true", help="add the adapter's update into the base's "
                   "weights (float or pruned bases; quantized ones are refused)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sensitivity", help="per-layer damage of a compression step (perplexity)",
                       description="Compress one decoder block (or one linear) at a time with "
                       "--method and measure perplexity on calibration text (not the test text). "
                       "Ranked magnitude pruning reads the same numbers. Results are cached.")
    p.add_argument("--model", default="smollm2-135m", help="model preset or checkpoint folder")
    p.add_argument("--method", default="magnitude:0.5:scope=layer",
                   help="one recipe step applied to each unit alone (default: %(default)s)")
    p.add_argument("--unit", choices=("block", "linear"), default="block",
                   help="compress one decoder block or one linear layer at a time")
    p.add_argument("--calibration", default="wikitext2", help="calibration text (default: %(default)s)")
    p.add_argument("--nsamples", type=int, default=4, help="token windows (default: %(default)s)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens a window (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the numbers to this JSON file")
    p.add_argument("--no-cache", action="store_true", help="measure again even if cached")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    _add_data_dir(p)
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("methods", help="list compression methods and their recipe options")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("tasks", help="list compbench's tasks and whether their data is local",
                       description="List every compbench task with its dataset, split, metrics, "
                       "and the local JSONL files it reads from the data dir (found or missing).")
    _add_data_dir(p)
    p.set_defaults(func=cmd_tasks)
    p = sub.add_parser("models", help="list model presets")
    p.set_defaults(func=cmd_models)
    sub.add_parser("lm-eval", add_help=False,
                   help="the lm_eval CLI with --model compressed and compbench tasks available "
                        "(all lm_eval flags; `compbench lm-eval --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if argv and argv[0] == "lm-eval":
            _quiet_libraries()
            return cmd_lm_eval(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        if getattr(args, "data_dir", None):
            from compbench.core.io import set_data_dir

            set_data_dir(args.data_dir)
        _quiet_libraries()
        return args.func(args)
    except CompbenchError as exc:
        print(f"compbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compbench: interrupted; finished runs are saved, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
