"""Reading version-1 results files (written before the typed record): their fields mapped onto
the version-2 layout, so reports of old runs keep working and show the same numbers."""

from __future__ import annotations

import dataclasses
from typing import Any

from compbench.core.io import digest_of


def _higher_is_better(config: dict[str, Any]) -> dict[str, bool]:
    """Directions from a task config's metric_list, else lm-eval's registry default for the
    metric (v1 files did not store lm-eval's map)."""
    from lm_eval.api.registry import is_higher_better

    directions = {}
    for metric in config.get("metric_list") or []:
        if isinstance(metric, dict) and "metric" in metric:
            name = metric["metric"]
            directions[name] = metric.get("higher_is_better", is_higher_better(name))
    return directions


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-2 record dict from a version-1 one. Headline metrics come from the current task
    YAMLs (v1 configs had none); v1 runs computed no standard errors."""
    from compbench.records.record import SCHEMA_VERSION, TaskResult
    from compbench.tasks.catalog import task_metadata

    run = data.get("run") or {}
    recipe = data.get("recipe") or {"string": run.get("recipe"), "steps": []}
    evaluation = data.get("eval") or {}
    configs = evaluation.get("configs") or {}
    versions = evaluation.get("versions") or {}
    counts = evaluation.get("n_samples") or {}
    protocols = evaluation.get("protocols") or {}
    tasks = {}
    for name, block in (evaluation.get("tasks") or {}).items():
        result = TaskResult.from_lm_eval(
            block, _higher_is_better(configs.get(name) or {}), task_metadata(name),
            version=versions.get(name), n_original=(counts.get(name) or {}).get("original"),
            n_effective=(counts.get(name) or {}).get("effective"), protocol=protocols.get(name))
        tasks[name] = dataclasses.asdict(result)
    compression = data.get("compression")
    if compression is not None:
        compression = {key: compression[key] for key in (
            "steps", "seconds", "baseline_size_bytes", "size_bytes", "baseline_16bit_bytes",
            "params_total", "params_nonzero", "checkpoint_bytes") if key in compression}
    return {
        "schema_version": SCHEMA_VERSION,
        "status": data.get("status", "error"),
        "run_key": "v1-" + digest_of(run),
        "model": data.get("model") or {"preset": run.get("model")},
        "artifact": {"recipe": recipe, "calibration": data.get("calibration")},
        "settings": {k: run.get(k) for k in ("tasks", "limit", "dtype", "max_length")},
        "compression": compression,
        "tasks": tasks,
        "timing": data.get("timing"),
        "env": data.get("env") or {},
        "error": data.get("error"),
        "traceback": data.get("traceback"),
    }
