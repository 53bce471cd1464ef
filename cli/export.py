"""`compbench export`: save a compressed model (with its adapter, beside it or merged) as a
Hugging Face checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from compbench.cli.common import RECIPE_HELP, add_data_dir
from compbench.errors import CompbenchError
from compbench.model_zoo.loading import DTYPE_HELP, DTYPES


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="save a compressed model as a Hugging Face checkpoint",
                       description="Compress a preset and save it with save_pretrained, so "
                       "`lm_eval --model hf --model_args pretrained=OUT_DIR` loads it. A recipe on a "
                       "CPU kernel whose layout does not save is written as the step that holds the "
                       "same numbers in a stock format: int8wo as torchao-int8, format=int4-cpu as "
                       "compressed-tensors.")
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
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compbench.artifacts.export import export_checkpoint, export_name
    from compbench.compressors import parse_recipe
    from compbench.model_zoo.loading import choose_device, resolve_dtype
    from compbench.model_zoo.presets import get_preset
    from compbench.orchestration.trained import build_presets

    preset = get_preset(args.model)
    asked = parse_recipe(args.recipe)
    recipe = asked.for_export(resolve_dtype(args.dtype, preset, choose_device(args.device)))
    if recipe != asked:
        print(f"recipe {asked} runs on a CPU kernel whose layout does not save; writing {recipe}, "
              "which holds the same integers and scales in a format from_pretrained reloads")
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
        from compbench.artifacts.adapter import check_mergeable, read_adapter

        adapter = read_adapter(args.adapter)
        if args.merge:
            check_mergeable(recipe)
    build_presets([args.model])
    export_checkpoint(preset, recipe, out, adapter=adapter, merge=args.merge, device=args.device,
                      dtype=args.dtype)
    what = f"recipe {recipe}" + (f" + {adapter.label}" if adapter else "")
    classifier = preset.task_head == "sequence-classification" or bool(adapter and adapter.num_labels)
    if classifier:  # lm-eval scores language models; compbench scores a classification head
        how = (f"compbench eval --model {out} --recipe fp32 --tasks DATASET" if args.merge or not adapter
               else f"compbench eval --model {args.model} --recipe {recipe} --adapter {out}/adapter "
                    "--tasks DATASET")
    elif adapter and not args.merge:
        how = f"lm_eval --model hf --model_args pretrained={out},peft={out}/adapter --tasks …"
    else:
        how = f"lm_eval --model hf --model_args pretrained={out} --tasks …"
    print(f"wrote {out} ({preset.name}, {what}{', merged' if args.merge else ''}); evaluate it "
          f"with:\n  {how}")
    return 0
