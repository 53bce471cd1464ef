"""The Trainer flags `compbench finetune` and `compbench distill` share, with their stage
config's defaults in the help."""

from __future__ import annotations

import argparse
import dataclasses

from compbench.cli.common import positive_int
from compbench.model_zoo.loading import DTYPE_HELP, DTYPES


def add_training_flags(p: argparse.ArgumentParser, config_class: type, max_length_help: str) -> None:
    """The Trainer flags `finetune` and `distill` share, with the stage config's defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    p.add_argument("--learning-rate", type=float, dest="learning_rate",
                   help=f"default: {defaults['learning_rate']:g}")
    p.add_argument("--epochs", type=float, help="passes over the training rows (default: 1)")
    p.add_argument("--max-steps", type=positive_int, dest="max_steps",
                   help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size",
                   help=f"default: {defaults['batch_size']}")
    p.add_argument("--grad-accum", type=positive_int, dest="grad_accum",
                   help="forwards per optimizer step (default: 1)")
    p.add_argument("--seed", type=int, help="default: 0")
    p.add_argument("--eval-steps", type=positive_int, dest="eval_steps",
                   help="evaluate and checkpoint every N steps (default: each epoch)")
    p.add_argument("--max-length", type=positive_int, dest="max_length",
                   help=f"{max_length_help} (default: {defaults['max_length']})")
    p.add_argument("--train-rows", type=positive_int, dest="train_rows",
                   help="use the first N shuffled training rows (default: all)")
    p.add_argument("--eval-rows", type=positive_int, dest="eval_rows",
                   help="use the first N held-out rows (default: all)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if present)")
    p.add_argument("--dtype", choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--resume", action="store_true",
                   help="continue from the last complete checkpoint in --output-dir")
