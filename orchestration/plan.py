"""The plan: every run a command makes, keyed before anything runs. `make_plan(specs, out)` is the
one place a run is identified; the runner, the executors and the summary take its `Plan`.

A run's file is named by its run key (the artifact identity plus the evaluation settings that
can change a number), so a rerun with the same inputs finds it and a changed input makes a new
run. Recipes arrive parsed (`RunSpec.recipe` is a `Recipe`), each artifact identity and each
lm-eval task manager is computed here once and handed down to the process that runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.compressors import Recipe
from compbench.errors import CompbenchError
from compbench.evaluation.settings import EvalSettings, run_key
from compbench.model_zoo.presets import Preset


@dataclass(frozen=True)
class RunSpec:
    """One run to make: a model preset (or folder), a parsed recipe, how to load and evaluate it."""

    model: str
    recipe: Recipe
    settings: EvalSettings
    device: str | None = None  # None: CUDA when present, else the CPU
    dtype: str | None = None  # None: the preset's
    adapter: str | None = None  # a peft LoRA adapter folder loaded onto the compressed model


@dataclass(frozen=True)
class PlannedRun:
    """A spec with everything settled before it runs: the preset and device, the artifact's
    identity (with the adapter's, when one is loaded), the run key and the results file."""

    spec: RunSpec
    preset: Preset
    device: str
    base_identity: dict[str, Any]  # the compressed model's, without an adapter
    identity: dict[str, Any]  # what the results record names as the artifact
    eval_fields: dict[str, Any]
    key: str
    path: Path
    task_manager: Any  # lm-eval's TaskManager for this model, built once in make_plan

    @property
    def label(self) -> str:
        return (f"{self.spec.model} recipe={self.spec.recipe}"
                + (f" adapter={self.spec.adapter}" if self.spec.adapter else ""))


@dataclass(frozen=True)
class Plan:
    """The runs of one command, in order, and where their results go."""

    runs: tuple[PlannedRun, ...]
    output_dir: Path


def _slug(spec: RunSpec, model: str) -> str:
    adapter = "__lora" if spec.adapter else ""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{model}__{spec.recipe}{adapter}")


def make_plan(specs: list[RunSpec], output_dir: Path) -> Plan:
    """Each spec's key and file: its artifact identity (source content hashes, canonical recipe,
    versions) and its evaluation key fields (task versions, data hashes, settings). Bad input
    (an unknown task, a classifier on a language-model task, a malformed data row, a chat
    template the model lacks, generation overrides without a generative task) is refused here,
    before any run starts."""
    from compbench.artifacts.adapter import adapter_identity, check_base, check_causal, read_adapter
    from compbench.artifacts.identity import artifact_identity
    from compbench.evaluation.classify import check_datasets
    from compbench.evaluation.lm_model import check_chat_template, check_evaluable
    from compbench.evaluation.task_manager import check_tasks, task_manager
    from compbench.model_zoo.loading import choose_device
    from compbench.model_zoo.presets import get_preset, preset_argument
    from compbench.tasks.catalog import check_generation_kwargs, check_local_data, is_generative

    runs = []
    for spec in specs:
        device = choose_device(spec.device)
        preset = get_preset(spec.model)
        settings = spec.settings
        manager = task_manager(settings.include_paths, settings.tasks, preset_argument(preset))
        check_tasks(manager, settings.tasks)
        for task in settings.tasks:
            check_local_data(task, manager.task_index)
            check_generation_kwargs(task, manager.task_index)
        generative = any(is_generative(t, manager.task_index) for t in settings.tasks)
        if settings.gen_kwargs and not generative:
            raise CompbenchError(f"gen_kwargs apply to generative tasks only, and none of "
                                 f"{', '.join(settings.tasks)} generates text; leave them out")
        if settings.kv_cache and not generative:
            raise CompbenchError(f"--kv-cache {settings.kv_cache} quantizes generation's cache, and none "
                                 f"of {', '.join(settings.tasks)} generates text; leave it out")
        adapter = read_adapter(spec.adapter) if spec.adapter else None
        num_labels = adapter.num_labels if adapter else None  # a classification adapter's head
        if preset.task_head == "sequence-classification" or num_labels is not None:  # evaluation/classify.py
            check_datasets(settings.tasks, preset.name if adapter is None else
                           f"{preset.name} with the classification adapter {adapter.path}")
            if settings.apply_chat_template:
                raise CompbenchError(f"'{preset.name}' is scored as a sequence classifier, on "
                                     "dataset rows without prompts: a chat template has nothing "
                                     "to format; leave --apply-chat-template out")
        else:
            check_evaluable(preset)
            check_chat_template(preset, settings.apply_chat_template)
        base = artifact_identity(preset, spec.recipe, spec.dtype, device, num_labels)
        identity = base
        if adapter is not None:
            if num_labels is None:
                check_causal(adapter)
            check_base(adapter, base)
            identity = adapter_identity(base, adapter)
        fields = settings.key_fields(manager.task_index, device)
        key = run_key(identity["key"], fields)
        path = output_dir / f"{_slug(spec, preset.name)}__{key[:10]}.json"
        runs.append(PlannedRun(spec, preset, device, base, identity, fields, key, path, manager))
    return Plan(tuple(runs), output_dir)
