"""Trained presets: looked up by the model zoo (never trained there), built once by the runner
(announced, in a fresh process), cached, and checked."""

import json

import pytest

from compbench.errors import CompbenchError
from compbench.model_zoo import presets
from compbench.model_zoo.loading import load_model
from compbench.model_zoo.presets import Preset, get_preset
from compbench.model_zoo.sources import source_identity
from compbench.model_zoo.trained import RECIPE_FILE, TRAINED, TrainedSpec, built_folder
from compbench.orchestration.trained import base_identity, build_presets

TINY = {"dataset": "sst2", "train_rows": 32, "eval_rows": 16, "batch_size": 8, "max_steps": 2,
        "max_length": 32}


def _register(monkeypatch, spec: TrainedSpec) -> None:
    monkeypatch.setitem(TRAINED, spec.name, spec)
    monkeypatch.setitem(presets.PRESETS, spec.name, Preset(
        spec.name, source=f"trained:{spec.name}", family="bert",
        task_head="sequence-classification", max_length=512))


@pytest.fixture
def tiny_teacher(tmp_path, monkeypatch, data_dir) -> TrainedSpec:
    """A tiny SST-2 teacher, in a fresh cache (the stage runs in a spawned process, which sees
    the cache through the environment)."""
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path / "cache"))
    spec = TrainedSpec("tiny-teacher", "finetune", {"model": "minilm-l6-v2", "head": "classification",
                                                    **TINY}, minutes_here=0.5)
    _register(monkeypatch, spec)
    return spec


def test_looking_a_trained_preset_up_never_trains_it(tiny_teacher):
    with pytest.raises(CompbenchError, match="'tiny-teacher' is not built yet; `compbench models "
                                             "--build tiny-teacher` builds it"):
        load_model(get_preset("tiny-teacher"), device="cpu")


@pytest.mark.heavy
def test_a_trained_preset_is_built_once_announced_then_loaded_from_the_cache(tiny_teacher, monkeypatch):
    said = []
    assert build_presets(["tiny-teacher", "smollm2-135m"], echo=said.append) == ["tiny-teacher"]
    assert said[0].startswith("building preset tiny-teacher: finetune of minilm-l6-v2, 2 training "
                              "steps, about 0.5 minutes")
    folder = built_folder(tiny_teacher, base_identity(tiny_teacher))
    made = json.loads((folder / RECIPE_FILE).read_text())
    assert made["stage"] == "finetune" and 0 <= made["held_out"]["accuracy"] <= 1
    said.clear()
    assert build_presets(["tiny-teacher"], echo=said.append) == [] and not said  # not retrained
    model, _ = load_model(get_preset("tiny-teacher"), device="cpu")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged

    # a student of it (a spawned process knows no test presets: the teacher is the cached folder)
    student = TrainedSpec("tiny-student", "distill", {
        "teacher": str(folder), "head": "classification", **TINY,
        "student_recipe": "structured:ffn=0.3:calibration=sst2:nsamples=2:seqlen=32"})
    _register(monkeypatch, student)
    assert build_presets(["tiny-student"], echo=said.append) == ["tiny-student"]
    student_model, _ = load_model(get_preset("tiny-student"), device="cpu")
    assert student_model.config.intermediate_size == 1536 - round(0.3 * 1536)
    identity = source_identity(get_preset("tiny-student"))
    assert identity["kind"] == "trained" and len(identity["files"]["model.safetensors"]) == 64


@pytest.mark.heavy
def test_a_damaged_cached_model_is_reported_not_used(tiny_teacher):
    build_presets(["tiny-teacher"], echo=lambda _: None)
    weights = built_folder(tiny_teacher, base_identity(tiny_teacher)) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(CompbenchError, match="corrupt model cache at .*tiny-teacher"):
        built_folder(tiny_teacher, base_identity(tiny_teacher))
    with pytest.raises(CompbenchError, match="corrupt model cache at .*tiny-teacher"):
        build_presets(["tiny-teacher"], echo=lambda _: None)
