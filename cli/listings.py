"""The three listing commands: `compbench methods`, `compbench models` (which also builds a
trained preset on request) and `compbench tasks`."""

from __future__ import annotations

import argparse

from compbench.cli.common import add_data_dir


def add_parsers(sub) -> None:
    p = sub.add_parser("methods", help="list compression methods and their recipe options")
    p.set_defaults(func=methods)
    p = sub.add_parser("models", help="list model presets (and build a trained one)",
                       description="List every model preset: its source, dtype and head; a "
                       "trained preset says whether it is built. --build NAME builds a trained "
                       "preset now (any command that names one builds it first anyway).")
    p.add_argument("--build", metavar="NAME", action="append",
                   help="build this trained preset now (repeatable)")
    p.set_defaults(func=models)
    p = sub.add_parser("tasks", help="list compbench's tasks and whether their data is local",
                       description="List every compbench task with its dataset, split, metrics, "
                       "and the local JSONL files it reads from the data dir (found or missing).")
    add_data_dir(p)
    p.set_defaults(func=tasks)


def methods(args: argparse.Namespace) -> int:
    from compbench.compressors import COMPRESSORS

    width = max(map(len, COMPRESSORS))
    for name, compressor in sorted(COMPRESSORS.items()):
        options = ", ".join(f"{key}={value}" for key, value in compressor.defaults().items())
        main = getattr(compressor.config_cls, "MAIN_OPTION", None)
        print(f"{name:{width}s} {compressor.summary}")
        if options:
            print(f"{'':{width}s}   options: {options}" + (f" (bare first value: {main})" if main else ""))
    print("\nalso: owl=true on wanda and sparsegpt (OWL's outlier-weighted sparsity per block); "
          "--kv-cache int8|int4|int2 on eval and sweeps (generation with a quantized KV cache)")
    return 0


def models(args: argparse.Namespace) -> int:
    from compbench.errors import CompbenchError
    from compbench.model_zoo import PRESETS
    from compbench.orchestration.trained import build_presets, is_built, trained_spec

    if args.build:
        unknown = [name for name in args.build if trained_spec(name) is None]
        if unknown:
            trained = [name for name in PRESETS if trained_spec(name) is not None]
            raise CompbenchError(f"--build {', '.join(unknown)}: not a trained preset; trained "
                                 f"presets: {', '.join(trained)}")
        build_presets(args.build)
        return 0
    for preset in PRESETS.values():
        note = "" if preset.task_head == "causal-lm" else "  (scored as a trained classifier)"
        spec = trained_spec(preset.name)
        if spec is not None:
            note += "  [built]" if is_built(spec) else "  [not built yet: --build it, or any run builds it]"
        print(f"{preset.name:22s} {preset.source:36s} {preset.dtype:9s} {preset.task_head}{note}")
    return 0


def tasks(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from compbench.tasks.catalog import task_catalog

    rows = [[t.name, t.dataset, t.split, ", ".join(t.metrics),
             "no data dir: hub" if not t.data_dir_set
             else "missing" if t.local_rows is None else f"{t.local_rows} rows",
             ", ".join(str(f) for f in t.local_files)] for t in task_catalog()]
    print(tabulate(rows, ["task", "dataset", "split", "metrics", "local rows", "local files"],
                   tablefmt="github"))
    print("local rows: the rows in a task's local files; a task may score fewer (one MATH subject, "
          "a subset stratified by subject such as math500_subset or mmlu_subset, or a split that "
          "only gives few-shot examples); docs/tasks.md says what each scores.")
    return 0
