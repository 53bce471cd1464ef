"""The research's studies as sweep files (`compbench sweep sweeps/<study>.yaml`)."""

from pathlib import Path

SWEEPS_DIR = Path(__file__).resolve().parent
