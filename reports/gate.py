"""The CI regression gate: does each compressed run still recover enough of the uncompressed
model's quality?

For every gated metric (each task's headline metric) of every compressed run, the **recovery
ratio** is compressed / uncompressed when higher is better and uncompressed / compressed when
lower is better (perplexity), directions from lm-eval's `higher_is_better` in the record. It
must reach the metric's threshold (default 0.95, as llm-compressor's lm-eval tests use). The
baseline file also records each run's absolute values: a value further than `warn_tolerance`
from its recorded one is a warning, not a failure (absolute numbers move with hardware and
library versions; recovery ratios much less). The uncompressed run's values are kept in the
baseline file with its run key, so a gate run whose uncompressed run is unchanged need not
evaluate it again. A run whose uncompressed model failed its baseline check
(`artifacts/baseline_check.py`) is refused: its recovery ratios would mean nothing.

    default_threshold: 0.95
    thresholds:                                        # minimum recovery, most specific wins
      wikitext2_ppl/word_perplexity: 0.9               # task/metric, every recipe
      nf4 wikitext2_ppl/word_perplexity: 0.75          # recipe task/metric
    warn_tolerance: 0.05
    baseline_recipe: fp32
    runs:                                              # written by `compbench gate --update`
      - {model: smollm2-135m, recipe: int8, limit: 2, run_key: ..., metrics: {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compbench.core.io import write_text_atomic
from compbench.errors import CompbenchError
from compbench.records.record import RunRecord, baseline_warning

DEFAULT_THRESHOLD = 0.95
DEFAULT_TOLERANCE = 0.05
HEADER = ("# compbench gate baseline. `compbench gate --update` rewrites `runs` from fresh results;\n"
          "# thresholds are minimum recovery ratios (compressed vs uncompressed), per task/metric.\n")


@dataclass
class Baseline:
    """A gate baseline file: thresholds and each run's recorded metric values."""

    path: Path
    default_threshold: float = DEFAULT_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    warn_tolerance: float = DEFAULT_TOLERANCE
    baseline_recipe: str = "fp32"
    runs: list[dict[str, Any]] = field(default_factory=list)

    def threshold(self, recipe: str, metric: str) -> float:
        """The recipe's own threshold for the metric, else the metric's, else the default."""
        return self.thresholds.get(f"{recipe} {metric}", self.thresholds.get(metric, self.default_threshold))

    def entry(self, model: str, recipe: str, limit) -> dict[str, Any] | None:
        wanted = (model, recipe, limit)
        return next((r for r in self.runs if (r["model"], r["recipe"], r.get("limit")) == wanted), None)

    def save(self) -> None:
        data = {"default_threshold": self.default_threshold, "thresholds": self.thresholds,
                "warn_tolerance": self.warn_tolerance, "baseline_recipe": self.baseline_recipe,
                "runs": self.runs}
        write_text_atomic(self.path, HEADER + yaml.safe_dump(data, sort_keys=False, width=100))


def _threshold(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise CompbenchError(f"{where}: a recovery threshold must be a number in (0, 1], got {value!r}")
    return float(value)


def load_baseline(path: Path, must_exist: bool = True) -> Baseline:
    """Read and check a baseline file (a missing one is empty when `must_exist` is False)."""
    if not path.is_file():
        if must_exist:
            raise CompbenchError(f"gate baseline {path} not found; create it from fresh results with "
                                 "`compbench gate --update`")
        return Baseline(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CompbenchError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    allowed = ("default_threshold", "thresholds", "warn_tolerance", "baseline_recipe", "runs")
    if not isinstance(data, dict) or any(k not in allowed for k in data):
        bad = next((k for k in data if k not in allowed), None) if isinstance(data, dict) else None
        raise CompbenchError(f"{path}: {bad or 'the file'}: unknown key or not a mapping; allowed: "
                             f"{', '.join(allowed)}")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise CompbenchError(f"{path}: thresholds: expected a mapping of task/metric: threshold")
    tolerance = data.get("warn_tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise CompbenchError(f"{path}: warn_tolerance: expected a number >= 0, got {tolerance!r}")
    runs = data.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"model", "recipe", "metrics"} <= set(r)
                                             for r in runs):
        raise CompbenchError(f"{path}: runs: expected a list of {{model, recipe, limit, metrics}}; "
                             "rewrite it with `compbench gate --update`")
    return Baseline(
        path, _threshold(data.get("default_threshold", DEFAULT_THRESHOLD), f"{path}: default_threshold"),
        {str(k): _threshold(v, f"{path}: thresholds.{k}") for k, v in thresholds.items()},
        float(tolerance), str(data.get("baseline_recipe", "fp32")), runs)


def gated_metrics(record: RunRecord) -> dict[str, tuple[float, bool | None]]:
    """`task/metric` -> (value, higher_is_better) for each task's headline metric."""
    found = {}
    for task, result in record.tasks.items():
        for key, metric in result.shown().items():
            if metric.value is not None:
                found[f"{task}/{key.split(',')[0]}"] = (metric.value, metric.higher_is_better)
    return found


def entry_of(record: RunRecord) -> dict[str, Any]:
    """What the baseline file records for a run."""
    return {"model": record.preset, "recipe": record.recipe, "limit": record.limit,
            "run_key": record.run_key,
            "metrics": {name: {"value": round(value, 6), "higher_is_better": hib}
                        for name, (value, hib) in sorted(gated_metrics(record).items())}}


def _refuse_broken(warning: str | None) -> None:
    if warning:
        raise CompbenchError(f"gate: refusing to gate against a broken baseline: {warning}")


@dataclass(frozen=True)
class Check:
    """One gated metric of one run."""

    model: str
    recipe: str
    metric: str
    uncompressed: float
    compressed: float
    recovery: float
    threshold: float

    @property
    def passed(self) -> bool:
        return self.recovery >= self.threshold


@dataclass
class GateResult:
    checks: list[Check]
    warnings: list[str]
    failed_runs: list[str]

    @property
    def passed(self) -> bool:
        return not self.failed_runs and all(c.passed for c in self.checks)


def recovery(compressed: float, uncompressed: float, higher_is_better: bool) -> float:
    """compressed / uncompressed when higher is better, uncompressed / compressed otherwise."""
    return compressed / uncompressed if higher_is_better else uncompressed / compressed


def _uncompressed(record: RunRecord, records: list[RunRecord], baseline: Baseline) -> dict[str, float]:
    for other in records:
        if (other.ok and other.recipe == baseline.baseline_recipe and other.preset == record.preset
                and other.task_names == record.task_names and other.limit == record.limit):
            return {name: value for name, (value, _) in gated_metrics(other).items()}
    cached = baseline.entry(record.preset, baseline.baseline_recipe, record.limit)
    if cached is None:
        raise CompbenchError(
            f"no uncompressed ({baseline.baseline_recipe}) run of {record.preset} with limit "
            f"{record.limit} in the results or in {baseline.path}; include the "
            f"{baseline.baseline_recipe} recipe in the runs")
    _refuse_broken(baseline_warning(cached.get("baseline_check"), record.preset))
    return {name: m["value"] for name, m in cached["metrics"].items()}


def _check_coverage(records: list[RunRecord], baseline: Baseline) -> None:
    """A gate that checks nothing, or that misses a compressed run its baseline file records,
    must not pass: each is one line naming what is missing."""
    present = {(r.preset, r.recipe, r.limit) for r in records}
    missing = [f"{r['model']} {r['recipe']} (limit {r.get('limit')})" for r in baseline.runs
               if r["recipe"] != baseline.baseline_recipe
               and (r["model"], r["recipe"], r.get("limit")) not in present]
    if missing:
        raise CompbenchError(f"gate: {len(missing)} run(s) that {baseline.path} records are not in the "
                             f"results: {', '.join(missing)}; run them (or gate with --sweep), or "
                             "drop them from the baseline with `compbench gate --update` on a full run")
    if not any(r.recipe != baseline.baseline_recipe for r in records):
        raise CompbenchError(f"gate: the results hold no compressed run to check (only "
                             f"{baseline.baseline_recipe} runs, or none); give the folder of a run "
                             "with compressed recipes")


def gate(records: list[RunRecord], baseline: Baseline) -> GateResult:
    """Check every finished compressed run against its uncompressed run and the baseline file;
    refuse to pass when there is nothing to check or a recorded run is missing."""
    _check_coverage(records, baseline)
    checks, warnings = [], []
    failed = [f"{r.preset} {r.recipe}: {r.error}" for r in records if not r.ok]
    for record in records:
        _refuse_broken(record.baseline_warning if record.ok else None)
    for record in records:
        if not record.ok or record.recipe == baseline.baseline_recipe:
            continue
        uncompressed = _uncompressed(record, records, baseline)
        recorded = baseline.entry(record.preset, record.recipe, record.limit)
        if recorded is None:
            raise CompbenchError(f"{baseline.path} has no run {record.preset} {record.recipe} "
                                 f"(limit {record.limit}); record it with `compbench gate --update`")
        for name, (value, higher_is_better) in gated_metrics(record).items():
            if name not in recorded["metrics"]:
                raise CompbenchError(f"{baseline.path}: run {record.preset} {record.recipe} has no "
                                     f"value for metric {name}; record it with `compbench gate --update`")
            if higher_is_better is None:
                warnings.append(f"{record.recipe} {name}: lm-eval gives no direction; not gated")
                continue
            if name not in uncompressed:
                raise CompbenchError(f"the uncompressed run of {record.preset} has no metric {name}")
            checks.append(Check(record.preset, record.recipe, name, uncompressed[name], value,
                                recovery(value, uncompressed[name], higher_is_better),
                                baseline.threshold(record.recipe, name)))
            expected = recorded["metrics"][name]["value"]
            if expected and abs(value - expected) / abs(expected) > baseline.warn_tolerance:
                moved = (value - expected) / expected
                warnings.append(f"{record.recipe} {name}: {value:.4g} is {moved:+.1%} "
                                f"from the recorded {expected:.4g} (tolerance {baseline.warn_tolerance:.0%})")
    return GateResult(checks, warnings, failed)


def updated(baseline: Baseline, records: list[RunRecord]) -> Baseline:
    """The baseline with every finished run's values recorded (thresholds kept)."""
    runs = {(r["model"], r["recipe"], r.get("limit")): r for r in baseline.runs}
    for record in records:
        if record.ok:
            entry = entry_of(record)
            if record.recipe == baseline.baseline_recipe and record.baseline_check is not None:
                entry["baseline_check"] = record.baseline_check  # what a gate run that reuses it checks
            runs[(record.preset, record.recipe, record.limit)] = entry
    baseline.runs = list(runs.values())
    return baseline
