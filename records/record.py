"""The results record: one run's identity, what compression did, and what evaluation measured.

One JSON file per run (`RunRecord.to_dict`). Reports and the gate read records through this
module, never by string paths into raw JSON. Metric keys stay lm-eval's (`"acc,none"`), each
with its value, standard error and lm-eval's `higher_is_better`. Files of an older
`schema_version` are migrated on read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2


def _number(value: Any, what: str) -> float | None:
    """A float, or None where lm-eval computed nothing ("N/A", NaN, null); anything else is an
    error, never a silently blank or wrong cell."""
    if value is None or value == "N/A":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is not a number: {value!r}")
    return None if math.isnan(value) else float(value)


def baseline_warning(check: dict[str, Any] | None, model: str) -> str | None:
    """The warning for a failed baseline check (artifacts/baseline_check.py), else None."""
    if not check or check.get("passed", True):
        return None
    return (f"the uncompressed {model} failed the baseline check: its perplexity on the first "
            f"{check['tokens']} WikiText-2 test tokens is {check['perplexity']:.4g}, above the "
            f"{check['bound']:.0f} that any credible model of {check['params'] / 1e6:.0f}M parameters "
            "stays under; every ratio and drop measured against it is meaningless (check how the "
            "model was converted and tokenized)")


@dataclass(frozen=True)
class MetricResult:
    """One metric of one task: lm-eval's value, standard error and direction."""

    value: float | None
    stderr: float | None = None
    higher_is_better: bool | None = None


@dataclass(frozen=True)
class TaskResult:
    """One task's metrics (keyed as lm-eval keys them), version, document counts and, from the
    task's YAML metadata, the headline metric and the perplexity protocol."""

    metrics: dict[str, MetricResult]
    version: Any = None
    n_original: int | None = None
    n_effective: int | None = None
    headline: str | None = None  # a key of `metrics`, e.g. "word_perplexity,none"
    label: str | None = None  # the headline's column label in reports
    protocol: dict[str, Any] | None = None

    @classmethod
    def from_lm_eval(cls, block: dict[str, Any], higher_is_better: dict[str, bool],
                     metadata: dict[str, Any] | None = None, **fields: Any) -> TaskResult:
        """From one task's block of lm-eval's `results` and its `higher_is_better` map."""
        metrics = {}
        for key, value in block.items():
            name, _, filter_name = key.partition(",")
            if not filter_name or name.endswith("_stderr"):
                continue
            stderr = block.get(f"{name}_stderr,{filter_name}")
            metrics[key] = MetricResult(_number(value, key), _number(stderr, f"{key} stderr"),
                                        higher_is_better.get(name))
        metadata = metadata or {}
        headline = metadata.get("headline")
        if headline is not None:  # a metric ("acc": its first filter) or "metric,filter"
            headline = next((k for k in metrics if headline in (k, k.split(",")[0])), None)
        return cls(metrics, headline=headline, label=metadata.get("label"), **fields)

    def shown(self) -> dict[str, MetricResult]:
        """The metrics a report shows: the headline, or every metric when the task names none."""
        if self.headline is not None:
            return {self.headline: self.metrics[self.headline]}
        return {k: m for k, m in self.metrics.items() if m.value is not None}


@dataclass(frozen=True)
class CompressionInfo:
    """What the recipe did: per-step stats, wall time, sizes before and after, parameter counts."""

    steps: list[dict[str, Any]]
    seconds: float
    baseline_size_bytes: int
    size_bytes: int
    baseline_16bit_bytes: int
    params_total: int
    params_nonzero: int
    checkpoint_bytes: int | None = None  # None: the result has no stock on-disk format

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 2**20

    @property
    def compression_ratio(self) -> float:
        """Against the uncompressed preset as loaded."""
        return self.baseline_size_bytes / self.size_bytes

    @property
    def compression_ratio_vs_16bit(self) -> float:
        return self.baseline_16bit_bytes / self.size_bytes

    @property
    def checkpoint_mb(self) -> float | None:
        return None if self.checkpoint_bytes is None else self.checkpoint_bytes / 2**20


@dataclass(frozen=True)
class Timing:
    """Wall times, token counts and speeds, peak memory of one run."""

    started_at: float
    wall_seconds: float | None = None
    load_and_compress_seconds: float | None = None
    eval_seconds: float | None = None
    eval_tokens: int | None = None
    eval_tokens_per_s: float | None = None
    prefill_tokens: int | None = None
    prefill_tokens_per_s: float | None = None
    generate_tokens: int | None = None
    generate_tokens_per_s: float | None = None
    peak_rss_mb: float | None = None
    peak_cuda_mb: float | None = None
    eval_samples_per_s: float | None = None  # a classifier's rows/s (evaluation/classify.py)
    latency_ms_per_batch: float | None = None  # a classifier's median forward per batch


@dataclass(frozen=True)
class RunRecord:
    """One run: its key and identity, and (when it finished) what it measured.

    `artifact` is the compressed model's identity (source content, canonical recipe with every
    step's config and version, calibration, library versions); `settings` the evaluation
    settings that can change a number. The run key is the digest of both.
    """

    status: str  # "ok" or "error"
    run_key: str
    model: dict[str, Any]  # preset, source, revision, dtype, max_length, device
    artifact: dict[str, Any]
    settings: dict[str, Any]
    compression: CompressionInfo | None = None
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    timing: Timing | None = None
    env: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # "bad_input" or "crashed"
    traceback: str | None = None
    # a fine-tuning run's steps, seconds, tokens/s, peak RSS, sizes and log paths (stages/)
    training: dict[str, Any] | None = None
    # generative tasks' generation (evaluation/generation.py): batches, rows, generated tokens,
    # decode and prefill tokens/s, median time to first token; per task its generation
    # settings and samples log (a path relative to the results file's folder)
    generation: dict[str, Any] | None = None
    # the uncompressed model's credibility check (artifacts/baseline_check.py): passed,
    # perplexity, bound, params, tokens, bos; None where none was made
    baseline_check: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    # the results file this record was read from (not written into it): what paths inside the
    # record, such as a samples log's, are relative to
    source: Path | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def preset(self) -> str:
        return self.model["preset"]

    @property
    def recipe(self) -> str:
        """The canonical recipe string, with the adapter trained on it or the distillation that
        trained it where there is one (`int8+lora:r=16:alpha=32`, `structured:ffn=0.3+distill:kl=1`)."""
        base = self.artifact["recipe"]["string"]
        for stage in ("adapter", "distillation"):
            if self.artifact.get(stage):
                base = f"{base}+{self.artifact[stage]['label']}"
        return base

    @property
    def limit(self) -> int | float | str | None:
        """The document limit (None: all documents); per-task limits as `TASK=N,TASK=N`, the
        form --limit takes them in."""
        per_task = self.settings.get("task_limits")
        if per_task:
            return ",".join(f"{task}={limit}" for task, limit in per_task.items())
        return self.settings.get("limit")

    @property
    def task_names(self) -> list[str]:
        return list(self.settings.get("tasks") or [])

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.artifact.get("calibration")

    @property
    def baseline_warning(self) -> str | None:
        """What is wrong with this run's uncompressed model, when its baseline check failed."""
        return baseline_warning(self.baseline_check, self.preset)

    def metric(self, task: str, key: str) -> MetricResult | None:
        result = self.tasks.get(task)
        return None if result is None else result.metrics.get(key)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["source"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record from its JSON form (older schema versions are migrated on read, by
        records/index.py's `read_record`)."""
        data = dict(data)
        if data.get("compression") is not None:
            data["compression"] = CompressionInfo(**data["compression"])
        if data.get("timing") is not None:
            data["timing"] = Timing(**data["timing"])
        data["tasks"] = {name: TaskResult(**{**task, "metrics": {
            key: MetricResult(_number(metric["value"], f"{name} {key}"),
                              _number(metric.get("stderr"), f"{name} {key} stderr"),
                              metric.get("higher_is_better"))
            for key, metric in task["metrics"].items()}})
            for name, task in (data.get("tasks") or {}).items()}
        return cls(**data)
