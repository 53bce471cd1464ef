"""Generation measured and kept: each `generate` call of a generative task timed from its start
to its first new token (time to first token: the prompt's prefill and one step) and on to its
last (decode), and the per-sample outputs written beside the results, as lm-eval's samples log.

Decode speed counts what the model computed: every row of a batch for every step, including rows
that already met a stop sequence while another row of the batch went on (lm-eval stops a batch
when all its rows have stopped).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.generation.streamers import BaseStreamer

from compbench.core.io import write_text_atomic


class FirstTokenClock(BaseStreamer):
    """A `generate` streamer that notes the time of the first new token (its first `put` is the
    prompt, the second the first generated token) and of the end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.ended: float | None = None
        self._puts = 0

    def put(self, value) -> None:
        self._puts += 1
        if self._puts == 2:
            self.first_token = time.perf_counter()

    def end(self) -> None:
        self.ended = time.perf_counter()


@dataclass(frozen=True)
class GenerateCall:
    """One batched `generate`: rows, prompt length (left-padded), steps taken, and its times."""

    rows: int
    prompt_tokens: int
    steps: int
    first_token_s: float
    decode_s: float


@dataclass
class GenerationLog:
    """Every `generate` call of one evaluation, summarized for the run record."""

    calls: list[GenerateCall] = field(default_factory=list)

    def add(self, rows: int, prompt_tokens: int, steps: int, clock: FirstTokenClock) -> None:
        ended = clock.ended or time.perf_counter()
        first = clock.first_token or ended
        self.calls.append(GenerateCall(rows, prompt_tokens, steps, first - clock.started, ended - first))

    def summary(self) -> dict[str, Any] | None:
        """Batches, rows, tokens and speeds over the calls (None when nothing was generated)."""
        if not self.calls:
            return None
        decoded = sum(c.rows * max(c.steps - 1, 0) for c in self.calls)
        decode_s = sum(c.decode_s for c in self.calls)
        prefill_s = sum(c.first_token_s for c in self.calls)
        return {
            "batches": len(self.calls),
            "rows": sum(c.rows for c in self.calls),
            "generated_tokens": sum(c.rows * c.steps for c in self.calls),
            "max_batch_rows": max(c.rows for c in self.calls),
            "decode_tokens_per_s": decoded / decode_s if decode_s > 0 and decoded else None,
            "prefill_tokens_per_s": sum(c.rows * c.prompt_tokens for c in self.calls) / prefill_s
            if prefill_s > 0 else None,
            "time_to_first_token_s": statistics.median(c.first_token_s for c in self.calls),
            "generate_seconds": prefill_s + decode_s,
        }


def generative_tasks(output: dict[str, Any]) -> list[str]:
    """The tasks of an lm-eval output that generate text (`output_type: generate_until`)."""
    return [name for name, config in (output.get("configs") or {}).items()
            if config.get("output_type") == "generate_until"]


def write_samples(folder: Path, task: str, samples: list[dict[str, Any]]) -> Path:
    """lm-eval's samples log of one task as JSONL (`samples_<task>.jsonl` in `folder`),
    written atomically, with lm-eval's own conversion of what JSON cannot hold."""
    from lm_eval.utils import handle_non_serializable

    path = folder / f"samples_{task}.jsonl"
    lines = [json.dumps(sample, default=handle_non_serializable, ensure_ascii=False) for sample in samples]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def generation_block(output: dict[str, Any], log: GenerationLog, samples_dir: Path | None) -> dict | None:
    """The run record's `generation`: the speeds of `log`, and per generative task its
    generation settings and (with `samples_dir`, a folder beside the results file) where its
    samples log is, relative to the results file's folder; None when no task of the run
    generates."""
    tasks = generative_tasks(output)
    if not tasks:
        return None
    per_task = {}
    for task in tasks:
        config = output["configs"][task]
        entry: dict[str, Any] = {"generation_kwargs": config.get("generation_kwargs"),
                                 "num_fewshot": config.get("num_fewshot")}
        if samples_dir is not None and task in (output.get("samples") or {}):
            path = write_samples(samples_dir, task, output["samples"][task])
            entry["samples"] = f"{samples_dir.name}/{path.name}"  # beside the results file
        per_task[task] = entry
    return {**(log.summary() or {}), "tasks": per_task}
