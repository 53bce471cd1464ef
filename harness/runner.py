"""Run one evaluation (preset + recipe + tasks) and write its results JSON; sweeps resume."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.reports.store import SCHEMA_VERSION, read_result, write_json_atomic


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's numbers; its hash names the results file."""

    model: str
    recipe: str
    tasks: tuple[str, ...]
    limit: int | float | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 1
    max_length: int | None = None

    def key(self) -> dict[str, Any]:
        return {"model": self.model, "recipe": self.recipe, "tasks": list(self.tasks),
                "limit": self.limit, "dtype": self.dtype, "max_length": self.max_length}

    def file_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{self.model}__{self.recipe}")
        return f"{slug}__{digest}.json"


def _git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _environment() -> dict[str, Any]:
    import bitsandbytes
    import lm_eval
    import torch
    import transformers

    import compbench

    return {
        "git_hash": _git_hash(),
        "versions": {"compbench": compbench.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "lm_eval": lm_eval.__version__,
                     "bitsandbytes": bitsandbytes.__version__,
                     "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch_threads": torch.get_num_threads()},
    }


def _json_safe(value: Any) -> Any:
    """lm-eval results hold numpy scalars, NaN and callables; keep what strict JSON can say."""
    plain = json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return _nan_to_none(plain)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def perplexity_protocols(tasks, lm, configs: dict) -> dict[str, Any]:
    """How each perplexity task counted, so numbers of different protocols are never mixed."""
    from compbench.tasks.chunked import DEFAULT_SEQLEN, capped_seqlen

    tokenizer = getattr(lm.tokenizer, "name_or_path", None)
    protocols: dict[str, Any] = {}
    if "wikitext2_ppl" in tasks:
        protocols["wikitext2_ppl"] = {
            "method": "lm-eval rolling loglikelihood over each article", "window_tokens": lm.max_length,
            "stride_tokens": lm.max_length, "window_prefix_token_id": lm.prefix_token_id,
            "tokenizer": tokenizer, "normalized_by": "words (word_perplexity), bytes (byte_perplexity)",
        }
    if "wikitext2_chunked" in tasks:
        metadata = configs.get("wikitext2_chunked", {}).get("metadata", {}) or {}
        seqlen = capped_seqlen(int(metadata.get("seqlen", DEFAULT_SEQLEN)),
                               getattr(lm.model.config, "max_position_embeddings", None))
        protocols["wikitext2_chunked"] = {
            "method": "GPTQ: split joined with '\\n\\n', tokenized once, non-overlapping chunks",
            "seqlen": seqlen, "stride_tokens": seqlen,
            "bos": "none added beyond what the tokenizer adds", "tokenizer": tokenizer,
            "normalized_by": "tokens (exp of mean token NLL)",
        }
    return protocols


SPEED_PROMPT_TOKENS = 128


def _speed_prompt(tokenizer):
    """A fixed 128-token prompt (repeated English text) for the prefill/generation speed check."""
    text = " ".join(["The history of the region is long and its people have many stories."] * 40)
    return tokenizer(text, return_tensors="pt").input_ids[:, :SPEED_PROMPT_TOKENS]


def evaluate_run(spec: RunSpec) -> dict[str, Any]:
    """Build the compressed model, evaluate it with lm-eval, and return the results record."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from compbench.harness.lm_model import CompressedLM
    from compbench.harness.measure import (
        PeakMemory,
        Timer,
        TokenCounter,
        checkpoint_bytes,
        param_counts,
        throughput,
    )
    from compbench.tasks import TASKS_DIR

    started = time.time()
    with PeakMemory() as load_memory, Timer() as load_timer:
        lm = CompressedLM(pretrained=spec.model, recipe=spec.recipe, device=spec.device,
                          dtype=spec.dtype, max_length=spec.max_length,
                          batch_size=spec.batch_size)
    compression = lm.compression
    params_total, params_nonzero = param_counts(lm.model)
    counter = TokenCounter(lm.model)
    with PeakMemory() as eval_memory, Timer() as eval_timer:
        output = lm_eval.simple_evaluate(
            model=lm, tasks=list(spec.tasks), limit=spec.limit,
            task_manager=TaskManager(include_path=str(TASKS_DIR),
                                     metadata={"pretrained": spec.model}),
            log_samples=False, bootstrap_iters=0,
        )
    counter.remove()
    speed = throughput(lm.model, _speed_prompt(lm.tokenizer))
    disk_bytes = None if lm.recipe.unexportable_steps() else checkpoint_bytes(lm.model)
    baseline_bytes = compression.size_bytes_before
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "error": None,
        "run": spec.key(),
        "model": {"preset": lm.preset.name, "source": lm.preset.source,
                  "revision": lm.preset.revision, "dtype": str(lm.model.dtype).removeprefix("torch."),
                  "max_length": lm.max_length, "device": str(lm.device)},
        "recipe": lm.recipe.as_dict(),
        "calibration": compression.calibration,
        "compression": {
            "steps": compression.steps,
            "seconds": compression.seconds,
            "baseline_size_bytes": baseline_bytes,
            "size_bytes": compression.size_bytes,
            "size_mb": compression.size_bytes / 2**20,
            "compression_ratio": baseline_bytes / compression.size_bytes,
            "baseline_16bit_bytes": compression.size_bytes_16bit_before,
            "compression_ratio_vs_16bit": compression.size_bytes_16bit_before / compression.size_bytes,
            "checkpoint_bytes": disk_bytes,
            "checkpoint_mb": None if disk_bytes is None else disk_bytes / 2**20,
            "params_total": params_total,
            "params_nonzero": params_nonzero,
        },
        "eval": {
            "lm_eval_version": lm_eval.__version__,
            "limit": spec.limit,
            "tasks": _json_safe(output["results"]),
            "configs": _json_safe(output.get("configs", {})),
            "versions": _json_safe(output.get("versions", {})),
            "n_samples": _json_safe(output.get("n-samples", {})),
            "protocols": perplexity_protocols(spec.tasks, lm, output.get("configs", {})),
        },
        "timing": {
            "load_and_compress_seconds": load_timer.seconds,
            "eval_seconds": eval_timer.seconds,
            "eval_tokens": counter.tokens,
            "eval_tokens_per_s": counter.tokens / eval_timer.seconds if eval_timer.seconds else None,
            **speed,
            "peak_rss_mb": max(load_memory.peak_rss_bytes, eval_memory.peak_rss_bytes) / 2**20,
            "peak_cuda_mb": None if eval_memory.peak_cuda_bytes is None
            else max(load_memory.peak_cuda_bytes or 0, eval_memory.peak_cuda_bytes) / 2**20,
            "started_at": started,
            "wall_seconds": time.time() - started,
        },
        "env": _environment(),
    }


def _call_in_worker(function, *args) -> tuple[str, Any]:
    """Call `function` inside the worker process; the outcome comes back as plain data, since
    not every library's exception object survives pickling."""
    from compbench.errors import CompbenchError

    try:
        return "ok", function(*args)
    except CompbenchError as exc:
        return "bad_input", str(exc)
    except Exception as exc:
        return "crashed", (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _settings_to_inherit() -> tuple[dict[str, int], list]:
    """This process's logger levels and (builtin-category) warning filters: a spawned worker
    starts without them, and would print what the CLI silenced."""
    import logging
    import warnings

    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level}
    levels[""] = logging.root.level
    filters = [f for f in warnings.filters if f[2].__module__ == "builtins"]
    return levels, filters


def _inherit_settings(levels: dict[str, int], filters: list) -> None:
    import logging
    import warnings

    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    warnings.filters[:] = filters


def in_fresh_process(function, *args) -> tuple[str, Any]:
    """Call a module-level `function(*args)` in a newly spawned process: a run's peak memory and
    speed are then its own (not inflated by the runs before it), and a run killed by the OS
    does not end the sweep.

    Returns ("ok", result), ("bad_input", message) or ("crashed", (message, traceback)).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    spawn = multiprocessing.get_context("spawn")  # fork would inherit this process's memory
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_inherit_settings,
                             initargs=_settings_to_inherit()) as pool:
        try:
            return pool.submit(_call_in_worker, function, *args).result()
        except BrokenProcessPool:
            return "crashed", ("the run's process died without a result (killed by the OS, "
                               "e.g. out of memory)", "")


def run_sweep(specs: list[RunSpec], output_dir: Path, force: bool = False,
              echo=print) -> list[Path]:
    """Run each spec, each in a fresh process, unless its results file already holds a finished
    run; returns the files of runs that failed.

    Each finished run is written atomically before the next starts, so an interrupted sweep
    loses nothing and its rerun skips what was done.
    """
    from compbench.errors import CompbenchError

    failed = []
    for index, spec in enumerate(specs, 1):
        path = output_dir / spec.file_name()
        label = f"[{index}/{len(specs)}] {spec.model} recipe={spec.recipe}"
        if path.exists() and not force:
            try:
                if read_result(path).get("status") == "ok":
                    echo(f"{label}: done already ({path}), skipping")
                    continue
            except CompbenchError:
                pass
        echo(f"{label}: running")
        outcome, value = in_fresh_process(evaluate_run, spec)
        if outcome == "bad_input":
            raise CompbenchError(value)
        if outcome == "ok":
            record = value
        else:  # a run that crashes is recorded, and the sweep goes on
            message, trace = value
            record = {"schema_version": SCHEMA_VERSION, "status": "error", "error": message,
                      "traceback": trace, "run": spec.key()}
            failed.append(path)
            echo(f"{label}: FAILED: {message}")
        write_json_atomic(path, record)
        if record["status"] == "ok":
            echo(f"{label}: wrote {path}")
    return failed
