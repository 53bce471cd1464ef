"""`compbench eval`: compress a preset with each recipe, evaluate each on lm-eval tasks."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import (
    RECIPE_HELP,
    add_run_options,
    batch_size,
    limit,
    positive_int,
    run_and_summarize,
)
from compbench.model_zoo.loading import DTYPE_HELP, DTYPES


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="compress a preset with one or more recipes and evaluate each",
                       description="Compress a model preset with each --recipe, evaluate it on "
                       "--tasks with lm-eval, and write one results JSON per run to --output-dir. "
                       "Runs whose results file is already complete are skipped (resume).")
    p.add_argument("--model", default="smollm2-135m",
                   help="model preset (see `compbench models`) or a local checkpoint folder")
    p.add_argument("--recipe", action="append", required=True, help=RECIPE_HELP + "; repeatable")
    p.add_argument("--tasks", default="wikitext2_ppl", help="comma-separated lm-eval task names")
    p.add_argument("--limit", type=limit, default=None, metavar="N|TASK=N,…",
                   help="documents per task (an int), or a fraction if < 1; per task as "
                   "TASK=N,TASK=N (the tasks not named are evaluated whole)")
    p.add_argument("--output-dir", default="results", help="where results JSON files go")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if present)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--batch-size", type=batch_size, default=1,
                   help="requests (questions, for answers sharing a context) a forward pass; "
                   "auto: the most that fit in half the free memory (the results record it)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="evaluation window in tokens (default: the preset's)")
    p.add_argument("--include-path", action="append", metavar="DIR",
                   help="folder of your own lm-eval task YAMLs, beside compbench's (repeatable)")
    chat = p.add_argument_group("chat formatting (lm-eval's --apply_chat_template and friends; "
                                "part of each run's identity)")
    chat.add_argument("--apply-chat-template", nargs="?", const=True, default=False, metavar="NAME",
                      help="format every prompt with the model's chat template (NAME: one of its "
                      "named templates); refused for a model without one")
    chat.add_argument("--fewshot-as-multiturn", action=argparse.BooleanOptionalAction, default=None,
                      help="few-shot examples as earlier chat turns (default: on with a template)")
    chat.add_argument("--system-instruction", metavar="TEXT", default=None,
                      help="a system prompt before the first turn")
    p.add_argument("--gen-kwargs", metavar="KEY=VALUE,…", default=None,
                   help="lm-eval's --gen_kwargs for every generative task, overriding its YAML: "
                   "max_gen_toks (new tokens per answer), until, do_sample, temperature; e.g. "
                   "max_gen_toks=1024 (part of each run's identity)")
    p.add_argument("--kv-cache", choices=("int8", "int4", "int2"), default=None,
                   help="generate with a quantized KV cache (transformers' QuantizedCache, HQQ "
                   "backend; the newest 128 tokens stay float): the memory of long contexts "
                   "(part of each run's identity; generative tasks only)")
    p.add_argument("--adapter", metavar="DIR", help="a LoRA adapter from `compbench finetune` "
                   "(<output-dir>/adapter) loaded onto each compressed model (SFT adapters)")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse every recipe (all checked before any runs), plan the runs once, build the model's
    trained preset if it names one, then run the plan and print the comparison."""
    from compbench.compressors import parse_recipe
    from compbench.errors import CompbenchError
    from compbench.evaluation.settings import (
        EvalSettings,
        chat_options,
        parse_gen_kwargs,
        parse_task_limits,
    )
    from compbench.evaluation.task_manager import check_include_paths, check_tasks, task_manager
    from compbench.model_zoo.loading import choose_device
    from compbench.model_zoo.presets import get_preset, preset_argument
    from compbench.orchestration.plan import RunSpec, make_plan
    from compbench.orchestration.trained import build_presets

    preset = get_preset(args.model)
    choose_device(args.device)
    recipes = [parse_recipe(r) for r in args.recipe]
    include_paths = check_include_paths(tuple(args.include_path or ()))
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    check_tasks(task_manager(include_paths, tasks, preset_argument(preset)), tasks)
    chat = chat_options(args.apply_chat_template, args.fewshot_as_multiturn, args.system_instruction)
    task_limits = ()
    if isinstance(args.limit, dict):
        try:
            task_limits = parse_task_limits(args.limit, tasks)
        except CompbenchError as exc:
            raise CompbenchError(f"--limit: {exc}") from None
    settings = EvalSettings(tasks=tasks, limit=None if task_limits else args.limit,
                            task_limits=task_limits, batch_size=args.batch_size,
                            max_length=args.max_length, include_paths=include_paths,
                            gen_kwargs=parse_gen_kwargs(args.gen_kwargs), kv_cache=args.kv_cache,
                            **chat)
    specs = [RunSpec(model=args.model, recipe=r, settings=settings, device=args.device,
                     dtype=args.dtype, adapter=args.adapter) for r in recipes]
    build_presets([args.model])
    plan = make_plan(specs, Path(args.output_dir))
    return run_and_summarize(plan, args, baseline=str(recipes[0]))
