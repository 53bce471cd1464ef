"""`compbench distill`: distill a teacher into a compressed student (stages/distill_run.py)."""

from __future__ import annotations

import argparse

from compbench.cli.common import add_data_dir
from compbench.cli.training_flags import add_training_flags
from compbench.stages.distill import DistillConfig

EXAMPLE = """\
example config (distill.yaml; every key is also a flag: --student-recipe, --max-steps, …):
  teacher: exported/minilm-sst2        # a trained classifier folder, or a decoder preset
  teacher_recipe: fp32
  student_recipe: structured:ffn=0.3:calibration=sst2
  head: classification                 # or causal (dataset: wikitext2)
  dataset: sst2
  ce: 0.5                              # weight of the cross-entropy with the labels
  kl: 0.5                              # weight of T^2 * KL to the teacher's softened outputs
  hidden: 1.0                          # weight of the MSE of mapped hidden states
  attention: 0.0                       # weight of the MSE of mapped attention maps
  temperature: 2.0
  layer_map: 0:0,3:3,6:6               # student:teacher hidden states (default: same depth)
  learning_rate: 5.0e-5
  max_steps: 200
  batch_size: 16
  eval_steps: 50
  max_length: 128
  output_dir: runs/minilm-ffn30-distilled
then: compbench distill --config distill.yaml    (--resume after an interruption)
      compbench eval --model runs/minilm-ffn30-distilled/student --recipe fp32 --tasks sst2
"""


def add_parser(sub) -> None:
    """The `distill` subcommand (flags default to None so that a --config file fills them)."""
    p = sub.add_parser(
        "distill", help="distill a teacher into a compressed student (logits, hidden states)",
        description="Build the teacher (--teacher, --teacher-recipe) and a student compressed from "
                    "it (--student-recipe), train the student on the Trainer with loss = ce*CE + "
                    "kl*T^2*KL + hidden*MSE(hidden states) + attention*MSE(attention maps), keep the "
                    "best checkpoint's student and write the training log, a loss curve and a "
                    "results JSON to --output-dir.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of the keys below (flags given here win)")
    p.add_argument("--teacher", help="a trained classifier folder, or a decoder preset/folder (causal)")
    p.add_argument("--teacher-recipe", dest="teacher_recipe", help="the teacher's recipe (default: fp32)")
    p.add_argument("--student-recipe", dest="student_recipe",
                   help="how the student is compressed from the teacher, e.g. structured:ffn=0.3")
    p.add_argument("--head", choices=("classification", "causal"), help="default: classification")
    p.add_argument("--dataset", help="classification: kasut_math, sst2 (default), commonsense_qa; "
                   "causal: wikitext2 (its validation text)")
    p.add_argument("--ce", type=float, help="weight of the cross-entropy with the labels (default: 0.5)")
    p.add_argument("--kl", type=float, help="weight of T^2 * KL to the teacher (default: 0.5)")
    p.add_argument("--hidden", type=float, help="weight of the hidden-state MSE (default: 0)")
    p.add_argument("--attention", type=float, help="weight of the attention-map MSE (default: 0)")
    p.add_argument("--temperature", type=float, help="default: 2")
    p.add_argument("--layer-map", dest="layer_map",
                   help="student:teacher hidden-state pairs, e.g. 0:0,3:6 (default: same depth)")
    p.add_argument("--output-dir", dest="output_dir",
                   help="run folder (default: runs/<teacher>-<student-recipe>-distilled)")
    add_training_flags(p, DistillConfig, "tokens per row; causal: the window length")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compbench.model_zoo.loading import choose_device
    from compbench.model_zoo.presets import get_preset
    from compbench.orchestration.trained import build_presets
    from compbench.stages.distill_run import KEYS, job_from, run_distill
    from compbench.stages.training import read_config_file

    values = read_config_file(args.config, KEYS, "distill") if args.config else {}
    values.update({k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None})
    job = job_from(values)
    get_preset(job.teacher)
    choose_device(job.device)
    build_presets([job.teacher])
    run_distill(job, resume=args.resume)
    return 0
