"""The evaluation choices that can change a number (`EvalSettings`) and the run key they make
with an artifact's identity, so a results file is reused only for the very same run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from compbench.core.io import digest_of


@dataclass(frozen=True)
class EvalSettings:
    """How a run evaluates: tasks, document limit, few-shot, batch size, window, device."""

    tasks: tuple[str, ...]
    limit: int | float | None = None  # documents per task (a fraction when < 1); None: all
    num_fewshot: int | None = None  # None: each task's own
    batch_size: int | str = 1  # or "auto": the most rows that fit (see evaluation/batch_size.py)
    max_length: int | None = None  # evaluation window in tokens; None: the preset's
    bootstrap_iters: int = 1000  # draws for the stderr of metrics lm-eval bootstraps
    include_paths: tuple[str, ...] = ()  # folders of the user's own task YAMLs, beside compbench's

    def key_fields(self, task_index: dict, device: str) -> dict[str, Any]:
        """What can change a number: these settings, each task's YAML (version, or its content
        for a user's task) and data files' sha256, the device kind and the lm-eval version.
        Where the user's task folders are is not part of it: their content is."""
        import lm_eval

        from compbench.model_zoo.loading import device_kind
        from compbench.tasks.catalog import task_fingerprint

        tasks = {}
        for name in self.tasks:
            tasks.update(task_fingerprint(name, task_index))
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "include_paths"}
        return {**fields, "tasks": list(self.tasks), "task_fingerprints": tasks,
                "device_kind": device_kind(device), "lm_eval": lm_eval.__version__}


def run_key(artifact_key: str, eval_fields: dict[str, Any]) -> str:
    """The digest naming one run: the artifact's identity plus the evaluation's key fields."""
    return digest_of({"artifact": artifact_key, "eval": eval_fields})
