"""The MMLU study with its QLoRA step: size, `mmlu_subset` accuracy, compression ratio and Score
of the uncompressed model, the NF4 + double-quant model and NF4 + a QLoRA adapter.

    python bench/mmlu_qlora.py      # bench/results/mmlu_qlora/report.md (about 15 minutes here)

Three commands, each resumable: `compbench finetune --config bench/mmlu_qlora.yaml` trains the
adapter (skipped once its results JSON exists, --resume after an interruption), `compbench eval`
scores fp32 and the NF4 base, and `compbench eval --adapter` the base with the adapter (eval
skips runs whose results exist); `compbench report` then writes the table with the Score.
Needs the data dir ($COMPBENCH_DATA_DIR or --data-dir).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("mmlu_qlora.yaml")
BASE = "nf4:double_quant=true"


def compbench(*arguments: str) -> None:
    command = [sys.executable, "-m", "compbench.cli.main", *arguments]
    print("$ compbench " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="local dataset copies (default: $COMPBENCH_DATA_DIR)")
    parser.add_argument("--output-dir", default="bench/results/mmlu_qlora")
    args = parser.parse_args()
    output = Path(args.output_dir)
    data = ["--data-dir", args.data_dir] if args.data_dir else []

    training = output / "qlora"
    if not list(training.glob("finetune__*.json")):
        resume = ["--resume"] if any((training / "checkpoints").glob("checkpoint-*")) else []
        compbench("finetune", "--config", str(CONFIG), "--output-dir", str(training), *resume, *data)
    evals = output / "eval"
    compbench("eval", "--recipe", "fp32", "--recipe", BASE, "--tasks", "mmlu_subset",
              "--output-dir", str(evals), *data)
    compbench("eval", "--recipe", BASE, "--adapter", str(training / "adapter"), "--tasks", "mmlu_subset",
              "--output-dir", str(evals), *data)
    compbench("report", str(evals), "--baseline", "fp32")


if __name__ == "__main__":
    main()
