"""Run a plan: skip the runs already done, execute the rest through an executor, write one
results file per run as each ends.

Each finished run is written atomically before the next is recorded, so an interrupted command
loses nothing and its rerun skips what was done.
"""

from __future__ import annotations

import time
from pathlib import Path

from compbench.errors import CompbenchError
from compbench.orchestration.executors import Executor, LocalExecutor, Outcome
from compbench.orchestration.plan import Plan, PlannedRun
from compbench.records.index import read_record, write_record
from compbench.records.record import RunRecord


def run_planned(run: PlannedRun, store_root: str | None = None) -> dict:
    """Build the artifact (from the store at `store_root` when it holds it) and evaluate it, in
    the executor's process, with the plan's identity and task manager; the record as a dict."""
    from compbench.artifacts.build import build
    from compbench.artifacts.store import ModelStore
    from compbench.core.measure import PeakMemory, Timer
    from compbench.evaluation.evaluate import evaluate

    started = time.time()
    spec = run.spec
    store = ModelStore(store_root) if store_root else None
    adapter = None
    if spec.adapter:
        from compbench.artifacts.adapter import read_adapter, with_adapter

        adapter = read_adapter(spec.adapter)
    with PeakMemory() as memory, Timer() as timer:
        artifact = build(run.preset, spec.recipe, device=run.device, dtype=spec.dtype, store=store,
                         num_labels=adapter.num_labels if adapter else None,
                         identity=run.base_identity)
        if adapter is not None:
            artifact = with_adapter(artifact, adapter)
    record = evaluate(artifact, spec.settings, manager=run.task_manager, key=run.key,
                      eval_fields=run.eval_fields, started_at=started, load_seconds=timer.seconds,
                      load_peak_rss_bytes=memory.peak_rss_bytes, samples_dir=run.path.with_suffix(""))
    return record.to_dict()


def _failure(run: PlannedRun, outcome: Outcome) -> RunRecord:
    return RunRecord(status="error", run_key=run.key, model={"preset": run.spec.model},
                     artifact=run.identity, settings=run.eval_fields, error=outcome.error,
                     error_kind=outcome.status, traceback=outcome.traceback)


def finished(path: Path) -> bool:
    """Whether a complete, successful results file is at `path`."""
    try:
        return path.exists() and read_record(path).ok
    except CompbenchError:
        return False


def _calibrated(record: RunRecord) -> str:
    """What a calibrated run read, said with its result (a recipe's default corpus is wikitext2
    unless the recipe or the sweep names another)."""
    calibration = record.calibration
    if not calibration:
        return ""
    return (f", calibrated on {calibration['dataset']} ({calibration['nsamples']} x "
            f"{calibration['seqlen']} tokens, seed {calibration['seed']})")


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


def run_plan(plan: Plan, force: bool = False, echo=print, executor: Executor | None = None,
             store: Path | None = None, only: set[str] | None = None) -> list[RunRecord]:
    """Run every planned run not already finished (with `only`: of those run keys); returns the
    records of runs that failed (bad input or a crash is that run's failure: the others go on).
    With `store`, compressed models are kept there and reused by later runs and sweeps."""
    from compbench.core.io import remove_stale_temporaries

    try:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompbenchError(f"cannot write results to {plan.output_dir}: {exc.strerror}") from None
    remove_stale_temporaries(plan.output_dir)
    runs = [run for run in plan.runs if only is None or run.key in only]
    labels = {run.key: f"[{i}/{len(runs)}] {run.label}" for i, run in enumerate(runs, 1)}
    todo = {}
    for run in runs:
        if not force and finished(run.path):
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
            echo(f"{labels[key]}: {record.model.get('origin', 'compressed')}{_calibrated(record)}; "
                 f"{headline(record)}")
            if record.baseline_warning:
                echo(f"    WARNING: {record.baseline_warning}")
            echo(f"    wrote {run.path}")
        else:
            failed.append(record)
            echo(f"{labels[key]}: FAILED: {record.error}")
    return failed
