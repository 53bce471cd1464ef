"""`compbench speed`: how fast a preset decodes with each recipe, beside llama.cpp on the same
model and the machine's memory-bandwidth limit."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import RECIPE_HELP, add_data_dir, positive_int


def prompt_lengths(text: str) -> tuple[int, ...]:
    """--prompt-lengths: comma-separated whole numbers >= 1, e.g. 128,512,2048."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 1 (e.g. "
                                         f"128,512,2048), got '{text}'")
    return tuple(sorted({int(part) for part in parts}))


def new_tokens(text: str) -> int:
    """--new-tokens: at least 2 (decode speed is timed from the first new token to the last)."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (decode speed is timed from the first new "
                                         f"token to the last), got {text}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "speed", help="decode/prefill speed of a preset per recipe, with llama.cpp and the bandwidth limit",
        description="Build the preset with each --recipe (all held in this process) and time them, "
        "repetitions interleaved across them: batch-1 greedy decode tokens/s, time to first token "
        "per prompt length, prefill tokens/s, batched generation tokens/s, memory; beside each row "
        "the bandwidth limit (the machine's read bandwidth over the weight bytes a token reads). "
        "Where llama-cpp-python is installed (make llama-cpp), llama.cpp rows time the preset's "
        "own GGUF and llama.cpp's Q4_0/Q8_0/F16 of it in the same run. Writes a JSON (resumed if "
        "interrupted; the same command again reprints it), a Markdown table and a plot.",
        epilog="example: compbench speed --model smollm2-135m --recipe fp32 --recipe bf16 "
               "--recipe int8wo --recipe int4 --recipe gptq:4:format=int4-cpu")
    p.add_argument("--model", default="smollm2-135m", help="model preset (see `compbench models`)")
    p.add_argument("--recipe", action="append", required=True,
                   help=RECIPE_HELP + "; repeatable (the first is the rows' reference)")
    p.add_argument("--new-tokens", type=new_tokens, default=128, help="tokens decoded (default 128)")
    p.add_argument("--prompt-lengths", type=prompt_lengths, default=(128, 512, 2048),
                   help="prompt lengths timed to the first token (default 128,512,2048); decoding "
                   "starts from the shortest, prefill is timed at the longest")
    p.add_argument("--batch-rows", type=positive_int, default=8,
                   help="rows of the batched generation (default 8)")
    p.add_argument("--repetitions", type=positive_int, default=3,
                   help="repetitions of every measurement, interleaved across the rows (default 3)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for torch and llama.cpp (default: torch's, all cores)")
    p.add_argument("--no-llama-cpp", action="store_true", help="leave out the llama.cpp rows")
    p.add_argument("--compile", action="store_true",
                   help="time each recipe a second time (its row '<recipe> compiled'), decoding "
                   "through torch.compile'd one-token steps on a static KV cache; compiling takes "
                   "about a minute a model and shape here, done before the timing")
    p.add_argument("--output", default=None, help="the run's JSON (default results/speed/"
                   "<model>__<run hash>.json); its .md table and .png plot go beside it")
    p.add_argument("--again", action="store_true", help="measure anew over a stored run")
    p.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda if present)")
    p.add_argument("--store", default=None, help="models store (default: $COMPBENCH_STORE, else the "
                   "user cache dir)")
    p.add_argument("--no-store", action="store_true", help="compress every recipe afresh, store nothing")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the input (recipes, model, context), run or resume the speed run, print the table."""
    from compbench.artifacts.store import ModelStore
    from compbench.cli.common import store_from
    from compbench.compressors import parse_recipe
    from compbench.core.io import digest_of, write_text_atomic
    from compbench.evaluation.speed import SpeedSettings
    from compbench.evaluation.speed_run import check_speed_input, run_identity, run_speed
    from compbench.model_zoo.loading import choose_device
    from compbench.model_zoo.presets import get_preset
    from compbench.reports.plots import speed_plot
    from compbench.reports.speed import render

    preset = get_preset(args.model)
    device = choose_device(args.device)
    recipes = [parse_recipe(r) for r in args.recipe]
    settings = SpeedSettings(new_tokens=args.new_tokens, prompt_lengths=args.prompt_lengths,
                             batch_rows=args.batch_rows, repetitions=args.repetitions,
                             threads=args.threads or 0)
    check_speed_input(preset, settings)
    llama_cpp = not args.no_llama_cpp
    identity = run_identity(preset.name, [str(r) for r in recipes], settings, llama_cpp, args.compile)
    path = Path(args.output) if args.output else \
        Path("results/speed") / f"{preset.name}__{digest_of(identity)[:10]}.json"
    store_dir = store_from(args)
    run = run_speed(preset, recipes, settings, path, llama_cpp=llama_cpp, again=args.again,
                    device=device, store=ModelStore(store_dir) if store_dir else None,
                    compiled=args.compile)
    text = render(run)
    table = path.with_suffix(".md")
    write_text_atomic(table, text)
    plot = speed_plot(run, path.with_suffix(".png"))
    print("\n" + text)
    print(f"wrote {path}, {table}" + (f", {plot}" if plot else ""))
    return 0
