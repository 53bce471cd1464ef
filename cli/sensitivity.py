"""`compbench sensitivity`: the perplexity damage of compressing one block (or linear) at a time."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import add_data_dir
from compbench.errors import CompbenchError
from compbench.model_zoo.loading import DTYPE_HELP, DTYPES


def add_parser(sub) -> None:
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
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from compbench.artifacts.build import compression_context
    from compbench.compressors.calibration import Calibrated
    from compbench.compressors.recipe import parse_recipe
    from compbench.compressors.sensitivity import measure_sensitivity
    from compbench.core.io import write_json_atomic
    from compbench.model_zoo.loading import load_model
    from compbench.model_zoo.presets import get_preset
    from compbench.orchestration.trained import build_presets

    preset = get_preset(args.model)
    recipe = parse_recipe(args.method)
    if len(recipe.steps) != 1:
        raise CompbenchError(f"--method takes one step, got '{recipe}'")
    try:
        calibration = Calibrated(args.calibration, args.nsamples, args.seqlen, args.seed)
    except ValueError as exc:
        raise CompbenchError(str(exc)) from None
    build_presets([args.model])
    model, tokenizer = load_model(preset, device=args.device, dtype=args.dtype)
    result = measure_sensitivity(model, compression_context(tokenizer), recipe.steps[0], args.unit,
                                 calibration, use_cache=not args.no_cache)
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
