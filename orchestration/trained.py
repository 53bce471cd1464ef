"""Building trained presets: a finetune or distill run that the command needing the preset starts,
announced first, in a fresh process (its progress and log as any run's), cached for later use.

`model_zoo/trained.py` says what each trained preset is made of and looks its folder up; it
never trains. Here the runner builds what a command names and the cache lacks, bases first (a
student distilled from a trained teacher needs the teacher): the stage run in a spawned worker
that dies with this process, its checkpoints and training log kept under the cache's `runs/`
(a killed build resumes), the result renamed into place under a file lock.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from compbench.core.io import as_stored
from compbench.errors import CompbenchError


def trained_spec(name: str):
    """The trained preset named `name`, or None for any other model."""
    from compbench.model_zoo.presets import PRESETS
    from compbench.model_zoo.trained import TRAINED

    preset = PRESETS.get(name)
    if preset is None or not preset.source.startswith("trained:"):
        return None
    return TRAINED[preset.source.removeprefix("trained:")]


def base_identity(spec) -> dict:
    """The source identity of the model a trained preset starts from (built, if trained)."""
    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import source_identity

    return source_identity(get_preset(spec.base))


def is_built(spec) -> bool:
    """Whether the trained preset is in the cache and matches its manifest (never, while the
    trained preset it starts from is not built: its key depends on that one's files)."""
    from compbench.model_zoo.cache import manifest_ok
    from compbench.model_zoo.trained import trained_folder

    try:
        return manifest_ok(trained_folder(spec, base_identity(spec)))
    except CompbenchError:
        return False


def build_presets(models: Iterable[str], echo=print) -> list[str]:
    """Build every trained preset among `models` (and the trained presets they start from) that
    is not in the cache yet; the names built. Each build is announced before it starts."""
    from compbench.model_zoo.cache import build_cached, manifest_ok
    from compbench.model_zoo.trained import run_folder, trained_folder

    built = []
    for name in dict.fromkeys(models):
        spec = trained_spec(name)
        if spec is None:
            continue
        built += build_presets([spec.base], echo)
        base = base_identity(spec)
        target = trained_folder(spec, base)
        if manifest_ok(target):
            continue
        echo(f"building preset {spec.name}: {spec.describe()}; training log in "
             f"{run_folder(spec, base)}, the model cached as {target}")
        build_cached(target, lambda folder, spec=spec: _build_in_worker(spec, folder), "retrain it")
        echo(f"built preset {spec.name}")
        built.append(spec.name)
    return built


def _build_in_worker(spec, target: Path) -> None:
    """The stage run in a freshly spawned process (its memory given back when it ends; it exits
    when this process does); its failure is this command's."""
    from compbench.orchestration.executors import in_fresh_process

    outcome = in_fresh_process(train_preset, spec, str(target))
    if outcome.status == "bad_input":
        raise CompbenchError(f"building preset {spec.name}: {outcome.error}")
    if outcome.status != "ok":
        raise RuntimeError(f"building preset {spec.name} failed: {outcome.error}\n{outcome.traceback or ''}")


def train_preset(spec, target: str) -> None:
    """In the worker: run the stage with the preset's settings (resuming its checkpoints), then
    fill the staging folder (the finetune adapter merged into its base; distillation's student
    as saved) and rename it onto `target`."""
    from compbench.model_zoo.cache import build_in_staging
    from compbench.model_zoo.trained import run_folder, write_trained_files

    run_dir = run_folder(spec, base_identity(spec))
    run_dir.mkdir(parents=True, exist_ok=True)
    values = {**spec.settings, "output_dir": str(run_dir)}
    resume = any((run_dir / "checkpoints").glob("checkpoint-*"))  # a killed build resumes
    if spec.stage == "finetune":
        from compbench.stages.finetune_run import job_from, run_finetune

        record, _ = run_finetune(job_from(values), resume=resume)
    else:
        from compbench.stages.distill_run import job_from, run_distill

        record = run_distill(job_from(values), resume=resume)
    record = as_stored(record.to_dict())

    def fill(staging: Path) -> None:
        if spec.stage == "finetune":
            from compbench.artifacts.adapter import read_adapter
            from compbench.artifacts.export import export_checkpoint
            from compbench.compressors import parse_recipe

            adapter = read_adapter(record["training"]["adapter_dir"])
            export_checkpoint(spec.base, parse_recipe(spec.settings.get("recipe", "fp32")), staging,
                              adapter=adapter, merge=True)
        else:
            shutil.copytree(record["training"]["student_dir"], staging)
        write_trained_files(staging, spec, record)

    build_in_staging(Path(target), fill)
