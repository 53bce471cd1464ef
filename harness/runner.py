"""Sweeps: plan runs (model x recipe x settings), skip those already done, execute the rest,
write one results file per run as each ends.

A run's file is named by its run key (the artifact identity plus the evaluation settings that
can change a number), so a rerun with the same inputs finds it and a changed input makes a new
run. Each finished run is written atomically before the next is recorded, so an interrupted
sweep loses nothing and its rerun skips what was done.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from compbench.errors import CompbenchError
from compbench.harness.evaluate import EvalSettings, run_key
from compbench.harness.executors import Executor, LocalExecutor, Outcome
from compbench.reports.record import RunRecord
from compbench.reports.store import read_record, write_record


@dataclass(frozen=True)
class RunSpec:
    """One run to make: a model preset (or folder), a recipe, how to load and evaluate it."""

    model: str
    recipe: str
    settings: EvalSettings
    device: str | None = None  # None: CUDA when present, else the CPU
    dtype: str | None = None  # None: the preset's
    adapter: str | None = None  # a peft LoRA adapter folder loaded onto the compressed model


@dataclass(frozen=True)
class PlannedRun:
    """A spec with its key (computed before anything runs) and the results file it writes."""

    spec: RunSpec
    key: str
    artifact: dict
    eval_fields: dict
    path: Path


def _slug(spec: RunSpec, model: str, canonical_recipe: str) -> str:
    adapter = "__lora" if spec.adapter else ""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{model}__{canonical_recipe}{adapter}")


def plan(specs: list[RunSpec], output_dir: Path) -> list[PlannedRun]:
    """Each spec's key and file: its artifact identity (source content hashes, canonical recipe,
    versions) and its evaluation key fields (task versions, data hashes, settings)."""
    from compbench.compressors import parse_recipe
    from compbench.harness.artifact import artifact_identity
    from compbench.harness.classify import check_datasets
    from compbench.harness.evaluate import task_index
    from compbench.harness.lm_model import check_evaluable
    from compbench.model_zoo.presets import choose_device, get_preset
    from compbench.tasks.catalog import check_local_data

    indexes = {spec.settings: task_index(spec.settings.include_paths, spec.settings.tasks)
               for spec in specs}
    for settings, index in indexes.items():
        for task in settings.tasks:
            check_local_data(task, index)
    planned = []
    for spec in specs:
        device = choose_device(spec.device)
        recipe = parse_recipe(spec.recipe)
        preset = get_preset(spec.model)
        if preset.task_head == "sequence-classification":  # scored by harness/classify.py
            check_datasets(spec.settings.tasks, preset.name)
        else:
            check_evaluable(preset)
        identity = artifact_identity(preset, recipe, spec.dtype, device)
        if spec.adapter:
            from compbench.harness.adapter import adapter_identity, check_causal, read_adapter

            adapter = read_adapter(spec.adapter)
            check_causal(adapter)
            identity = adapter_identity(identity, adapter)
        fields = spec.settings.key_fields(indexes[spec.settings], device)
        key = run_key(identity["key"], fields)
        path = output_dir / f"{_slug(spec, preset.name, str(recipe))}__{key[:10]}.json"
        planned.append(PlannedRun(spec, key, identity, fields, path))
    return planned


def run_planned(run: PlannedRun, store_root: str | None = None) -> dict:
    """Build the artifact (from the store at `store_root` when it holds it) and evaluate it, in
    the executor's process; the record as a dict."""
    from compbench.core.measure import PeakMemory, Timer
    from compbench.harness.artifact import build
    from compbench.harness.evaluate import evaluate
    from compbench.harness.store import ModelStore

    started = time.time()
    spec = run.spec
    store = ModelStore(store_root) if store_root else None
    with PeakMemory() as memory, Timer() as timer:
        artifact = build(spec.model, spec.recipe, device=spec.device, dtype=spec.dtype, store=store)
        if spec.adapter:
            from compbench.harness.adapter import read_adapter, with_adapter

            artifact = with_adapter(artifact, read_adapter(spec.adapter))
    if artifact.key != run.artifact["key"]:
        raise RuntimeError("the artifact built differs from the one planned (its source or "
                           "libraries changed while the sweep ran)")
    record = evaluate(artifact, spec.settings, key=run.key, eval_fields=run.eval_fields,
                      started_at=started, load_seconds=timer.seconds,
                      load_peak_rss_bytes=memory.peak_rss_bytes)
    return record.to_dict()


def _failure(run: PlannedRun, outcome: Outcome) -> RunRecord:
    return RunRecord(status="error", run_key=run.key, model={"preset": run.spec.model},
                     artifact=run.artifact, settings=run.eval_fields, error=outcome.error,
                     error_kind=outcome.status, traceback=outcome.traceback)


def _finished(path: Path) -> bool:
    try:
        return path.exists() and read_record(path).ok
    except CompbenchError:
        return False


def headline(record: RunRecord) -> str:
    """A finished run's headline metrics on one line (`wikitext2 word ppl 31.75 ± 0.41`)."""
    parts = []
    for task, result in record.tasks.items():
        for key, metric in result.shown().items():
            if metric.value is None:
                continue
            label = result.label if key == result.headline and result.label else f"{task} {key.split(',')[0]}"
            spread = f" ± {metric.stderr:.2f}" if metric.stderr else ""
            parts.append(f"{label} {metric.value:.4g}{spread}")
    return "; ".join(parts)


def run_sweep(specs: list[RunSpec], output_dir: Path, force: bool = False, echo=print,
              executor: Executor | None = None, store: Path | None = None) -> list[RunRecord]:
    """Run every spec not already finished in `output_dir`; returns the records of runs that
    failed (bad input or a crash is that run's failure: the sweep goes on). With `store`,
    compressed models are kept there and reused by later runs and sweeps."""
    from compbench.core.io import remove_stale_temporaries

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompbenchError(f"cannot write results to {output_dir}: {exc.strerror}") from None
    remove_stale_temporaries(output_dir)
    planned = plan(specs, output_dir)
    labels = {run.key: f"[{i}/{len(planned)}] {run.spec.model} recipe={run.spec.recipe}"
                       + (f" adapter={run.spec.adapter}" if run.spec.adapter else "")
              for i, run in enumerate(planned, 1)}
    todo = {}
    for run in planned:
        if not force and _finished(run.path):
            echo(f"{labels[run.key]}: done already ({run.path}), skipping")
        else:
            todo[run.key] = run
    failed = []
    executor = executor or LocalExecutor()
    def jobs():
        for key, run in todo.items():
            echo(f"{labels[key]}: running")
            yield key, run_planned, (run, str(store) if store else None)

    for key, outcome in executor.run(jobs()):
        run = todo[key]
        record = RunRecord.from_dict(outcome.value) if outcome.status == "ok" else _failure(run, outcome)
        write_record(run.path, record)
        if record.ok:
            echo(f"{labels[key]}: {record.model.get('origin', 'compressed')}; {headline(record)}")
            if record.baseline_warning:
                echo(f"    WARNING: {record.baseline_warning}")
            echo(f"    wrote {run.path}")
        else:
            failed.append(record)
            echo(f"{labels[key]}: FAILED: {record.error}")
    return failed
