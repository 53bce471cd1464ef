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

EXAMPLES = """\
examples:
  compbench eval --model smollm2-135m --recipe nf4 --tasks wikitext2_ppl --limit 4
  compbench eval --model smollm2-135m --recipe fp32 --recipe int8 --recipe magnitude:0.5
  compbench report results/
  compbench lm-eval --model compressed --model_args pretrained=smollm2-135m,recipe=nf4 \\
      --tasks wikitext2_ppl --limit 4
  compbench export --model smollm2-135m --recipe int8 exported/smollm2-int8
  compbench eval --recipe gptq:bits=4:group_size=64 --recipe rtn:bits=4 --tasks wikitext2_chunked
  compbench sensitivity --model smollm2-135m --method magnitude:0.5:scope=layer
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


class _Parser(argparse.ArgumentParser):
    """argparse with compbench's one-line errors (no usage block): exit 2, what is wrong."""

    def error(self, message: str):
        self.exit(2, f"compbench: error: {self.prog.removeprefix('compbench ')}: {message}\n")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder of local dataset copies laid out as "
                        "<dataset>/<split>.jsonl (default: $COMPBENCH_DATA_DIR, else the hub)")


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
    from compbench.harness.evaluate import EvalSettings
    from compbench.harness.runner import RunSpec, run_sweep
    from compbench.model_zoo.presets import choose_device, get_preset

    get_preset(args.model)
    choose_device(args.device)
    recipes = [str(parse_recipe(r)) for r in args.recipe]  # validate all before running any
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    _check_tasks(tasks)
    settings = EvalSettings(tasks=tasks, limit=args.limit, batch_size=args.batch_size,
                            max_length=args.max_length)
    specs = [RunSpec(model=args.model, recipe=r, settings=settings, device=args.device,
                     dtype=args.dtype) for r in recipes]
    failed = run_sweep(specs, Path(args.output_dir), force=args.force)
    if failed:
        print(f"compbench: {len(failed)} of {len(specs)} run(s) failed: "
              + ", ".join(r.recipe for r in failed), file=sys.stderr)
        for record in failed:
            print(f"compbench: error: {record.error}", file=sys.stderr)
        return 2 if any(r.error_kind == "bad_input" for r in failed) else 1
    return 0


def _check_tasks(tasks: tuple[str, ...]) -> None:
    from compbench.harness.evaluate import task_index
    from compbench.tasks import TASKS_DIR

    if not tasks:
        raise CompbenchError("no tasks given; e.g. --tasks wikitext2_ppl")
    known = set(task_index())
    unknown = [t for t in tasks if t not in known]
    if unknown:
        ours = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
        raise CompbenchError(f"unknown task(s) {', '.join(unknown)}; compbench tasks: "
                             f"{', '.join(ours)} (any lm-eval task name also works)")


def cmd_report(args: argparse.Namespace) -> int:
    from compbench.core.io import write_text_atomic
    from compbench.reports.store import load_results
    from compbench.reports.table import markdown_report

    records = load_results(Path(args.results_dir))
    baseline = _canonical(args.baseline)
    recipes = sorted({r.recipe for r in records if r.ok})
    if baseline not in recipes:
        raise CompbenchError(f"no finished run of the baseline recipe '{args.baseline}' in "
                             f"{args.results_dir}; recipes there: {', '.join(recipes) or 'none'} "
                             "(choose one with --baseline)")
    text = markdown_report(records, baseline)
    print(text)
    output = Path(args.output) if args.output else Path(args.results_dir) / "report.md"
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        raise CompbenchError(f"cannot write the report to {output}: {exc.strerror}") from None
    print(f"wrote {output}")
    return 0


def _canonical(recipe: str) -> str:
    """A recipe's canonical spelling where it parses (`mixed:5.0` -> `mixed:5`), else as given."""
    from compbench.compressors import parse_recipe

    try:
        return str(parse_recipe(recipe))
    except CompbenchError:
        return recipe


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
    artifact = build(preset, recipe, device=args.device, dtype=args.dtype)
    save_checkpoint_atomic(artifact, out)
    print(f"wrote {out} ({preset.name}, recipe {recipe}); evaluate it with:\n"
          f"  lm_eval --model hf --model_args pretrained={out} --tasks …")
    return 0


def save_checkpoint_atomic(artifact, out: Path) -> None:
    """`save_pretrained` into a staging folder beside `out`, then renamed onto it: a kill
    mid-save leaves no half checkpoint under the name, only a staging folder that the next
    export beside it removes."""
    import os
    import shutil

    from compbench.core.io import remove_stale_temporaries, staging_path

    remove_stale_temporaries(out.parent)
    staging = staging_path(out)
    artifact.model.save_pretrained(staging)
    artifact.tokenizer.save_pretrained(staging)
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
        note = "" if preset.task_head == "causal-lm" else "  (not evaluable yet: encoder)"
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
    """The stock lm_eval CLI, with the `compressed` model and compbench's tasks available."""
    import compbench.harness.lm_model  # noqa: F401  (registers --model compressed)
    from compbench.tasks import TASKS_DIR

    if "--data-dir" in argv:
        from compbench.core.io import set_data_dir

        i = argv.index("--data-dir")
        if i + 1 >= len(argv):
            raise CompbenchError("--data-dir needs a folder")
        set_data_dir(argv[i + 1])
        del argv[i:i + 2]
    if not any(a == "--include_path" or a.startswith("--include_path=") for a in argv):
        argv = [*argv, "--include_path", str(TASKS_DIR)]
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


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--dtype", default=None, help="load dtype (default: the preset's)")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--max-length", type=_positive_int, default=None,
                   help="evaluation window in tokens (default: the preset's)")
    p.add_argument("--force", action="store_true", help="rerun even if results exist")
    _add_data_dir(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="markdown comparison table of a results folder",
                       description="Read every results JSON in RESULTS_DIR and print and write a "
                       "markdown table: size, compression ratio, metrics and their change vs "
                       "the baseline recipe.")
    p.add_argument("results_dir")
    p.add_argument("--output", help="markdown file to write (default: RESULTS_DIR/report.md)")
    p.add_argument("--baseline", default="fp32", help="recipe the changes are measured against")
    p.set_defaults(func=cmd_report)

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
    p.add_argument("--dtype", default=None)
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR")
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
    p.add_argument("--dtype", default=None)
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
