"""The math-topic study: LoRA adapters with a classification head on 8-bit, 4-bit, mixed 4/8-bit
and unquantized bases of the embedded model, scored by F1 micro and macro on kasut_math's
held-out 10%.

    python bench/math_topic.py      # bench/results/math_topic.md (about 15 minutes a row here)

Every row is one `compbench finetune --config bench/math_topic.yaml` with its own recipe and
LoRA shape; its results JSON is read back for the table. A row whose JSON exists is not rerun,
and an interrupted row continues from its last checkpoint (--resume), so the study resumes
where it stopped. Needs the data dir ($COMPBENCH_DATA_DIR or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tabulate import tabulate

CONFIG = Path(__file__).with_name("math_topic.yaml")
# (quantization shown, recipe, r, alpha): the rows of the research's table
ROWS = (
    ("int8", "int8", 16, 32),
    ("nf4", "nf4", 16, 32),
    ("int8", "int8", 32, 64),
    ("nf4", "nf4", 32, 64),
    ("none (fp32)", "fp32", 32, 64),
    ("mixed 4/8-bit", "mixed:5:method=bnb", 16, 32),
)


def run_row(recipe: str, r: int, alpha: int, folder: Path, data_dir: str | None) -> dict:
    """Train one row (or resume it) and return its results record."""
    done = sorted(folder.glob("finetune__*.json"))
    if not done:
        command = [sys.executable, "-m", "compbench.cli.main", "finetune", "--config", str(CONFIG),
                   "--recipe", recipe, "--r", str(r), "--alpha", str(alpha), "--output-dir", str(folder)]
        if any((folder / "checkpoints").glob("checkpoint-*")):
            command.append("--resume")
        if data_dir:
            command += ["--data-dir", data_dir]
        print("$ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
        done = sorted(folder.glob("finetune__*.json"))
    return json.loads(done[-1].read_text())


def table_row(label: str, r: int, alpha: int, record: dict) -> list[str]:
    best, training = record["training"]["best"], record["training"]
    return [label, f"r={r}, α={alpha}", f"{best['f1_micro']:.3f}", f"{best['f1_macro']:.3f}",
            f"{best['accuracy']:.3f}", f"{training['size_with_adapter_bytes'] / 1e6:.1f}",
            f"{training['adapter_bytes'] / 1e6:.1f}", f"{training['seconds'] / 60:.1f}",
            f"{training['tokens_per_s']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="local dataset copies (default: $COMPBENCH_DATA_DIR)")
    parser.add_argument("--output-dir", default="bench/results/math_topic")
    args = parser.parse_args()

    from compbench.core.io import write_text_atomic

    rows = []
    for label, recipe, r, alpha in ROWS:
        folder = Path(args.output_dir) / f"{recipe.replace(':', '_').replace('=', '-')}-r{r}"
        rows.append(table_row(label, r, alpha, run_row(recipe, r, alpha, folder, args.data_dir)))
        print(rows[-1], flush=True)
    header = ["quantization", "LoRA", "F1 micro", "F1 macro", "accuracy",
              "size MB (10^6 bytes, base + adapter)", "adapter MB", "train + eval min", "train tokens/s"]
    table = tabulate(rows, header, tablefmt="github", disable_numparse=True)
    write_text_atomic(Path(args.output_dir).with_suffix(".md"), table + "\n")
    print(table)


if __name__ == "__main__":
    main()
