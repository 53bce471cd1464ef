"""lm-eval task YAMLs for compbench, and where their data comes from."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
