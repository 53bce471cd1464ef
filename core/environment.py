"""Where a run ran: the checkout's commit, compbench's and Python's versions, the machine and
the CPU features that change low-precision numerics (recorded in every results file)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any


def _git_hash() -> str | None:
    """The checkout's commit, when compbench runs from a git checkout (else None, silently)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=root, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_flags() -> list[str]:
    """The CPU features that change low-precision numerics (bf16 and AMX kernels)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile",
                                            "avx512f", "avx2"))


def environment() -> dict[str, Any]:
    """The `env` block of a results record."""
    import torch

    import compbench

    return {
        "git_hash": _git_hash(),
        "versions": {"compbench": compbench.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_flags": _cpu_flags(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch_threads": torch.get_num_threads()},
    }


