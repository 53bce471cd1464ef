"""`compbench finetune`: train a LoRA/QLoRA adapter on a compressed base (stages/finetune_run.py)."""

from __future__ import annotations

import argparse

from compbench.cli.common import add_data_dir, positive_int
from compbench.cli.training_flags import add_training_flags
from compbench.stages.finetune import FinetuneConfig

EXAMPLE = """\
example config (finetune.yaml; every key is also a flag: --learning-rate, --max-steps, …):
  model: smollm2-135m
  recipe: nf4:double_quant=true       # the base: int8, nf4, mixed:5:method=bnb, fp32, …
  head: classification                # or sft (then give mix instead of dataset)
  dataset: kasut_math                 # kasut_math, sst2, commonsense_qa
  # mix: gsm8k=1.0,commonsense_qa=0.5  # sft: fraction of each train split
  r: 16
  alpha: 32
  dropout: 0.05
  target_modules: all-linear          # or q_proj,v_proj
  learning_rate: 2.0e-4
  epochs: 1                           # or max_steps: 200
  batch_size: 8
  grad_accum: 1
  seed: 0
  eval_steps: 50                      # evaluate and checkpoint every 50 steps (default: each epoch)
  max_length: 256
  train_rows: 2000                    # the first N shuffled training rows (default: all)
  output_dir: runs/kasut-nf4-r16
then: compbench finetune --config finetune.yaml    (--resume after an interruption)
      compbench eval --model smollm2-135m --recipe nf4:double_quant=true \
          --adapter runs/kasut-nf4-r16/adapter --tasks kasut_math   (the head, scored again)
"""


def add_parser(sub) -> None:
    """The `finetune` subcommand (flags default to None so that a --config file fills them)."""
    p = sub.add_parser(
        "finetune", help="train a LoRA/QLoRA adapter on a compressed base (classification or SFT)",
        description="Compress a base with --recipe, train a LoRA adapter on it with the transformers "
                    "Trainer (classification head) or trl's SFTTrainer (causal-LM SFT on a --mix, "
                    "loss on the answer only), keep the best checkpoint's adapter, and write the "
                    "training log, a loss curve and a results JSON to --output-dir.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of the keys below (flags given here win)")
    p.add_argument("--model", help="model preset or checkpoint folder (default: smollm2-135m)")
    p.add_argument("--recipe", help="compression recipe of the base (default: fp32), e.g. int8, "
                   "nf4:double_quant=true, mixed:5:method=bnb")
    p.add_argument("--head", choices=("classification", "sft"), help="default: classification")
    p.add_argument("--dataset", help="classification data: kasut_math (default), sst2, commonsense_qa")
    p.add_argument("--num-labels", type=positive_int, dest="num_labels",
                   help="classes of the head (default: the dataset's)")
    p.add_argument("--mix", help="sft data: NAME=FRACTION of each train split, e.g. "
                   "gsm8k=1.0,commonsense_qa=0.5 (gsm8k, math, commonsense_qa, mmlu_aux)")
    p.add_argument("--r", type=positive_int, help="LoRA rank (default: 16)")
    p.add_argument("--alpha", type=float, help="LoRA alpha (default: 32)")
    p.add_argument("--dropout", type=float, help="LoRA dropout (default: 0.05)")
    p.add_argument("--target-modules", dest="target_modules",
                   help="all-linear (default) or layer names, e.g. q_proj,v_proj")
    p.add_argument("--held-out-fraction", type=float, dest="held_out_fraction",
                   help="sft: part of the mix held out for eval loss (default: 0.05)")
    p.add_argument("--output-dir", dest="output_dir",
                   help="run folder (default: runs/<model>-<recipe>-<head>)")
    add_training_flags(p, FinetuneConfig, "tokens per row")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compbench.artifacts.adapter import require_peft
    from compbench.model_zoo.loading import choose_device
    from compbench.model_zoo.presets import get_preset
    from compbench.orchestration.trained import build_presets
    from compbench.stages.finetune_run import KEYS, job_from, run_finetune
    from compbench.stages.training import read_config_file

    require_peft("compbench finetune")
    values = read_config_file(args.config, KEYS, "finetune") if args.config else {}
    values.update({k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None})
    job = job_from(values)
    get_preset(job.model)
    choose_device(job.device)
    build_presets([job.model])
    run_finetune(job, resume=args.resume)
    return 0
