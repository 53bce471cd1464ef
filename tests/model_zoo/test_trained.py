"""Trained presets: a finetune or distill run made once on first use, cached, and checked."""

import json

import pytest

from compbench.errors import CompbenchError
from compbench.model_zoo import presets
from compbench.model_zoo.presets import Preset, get_preset, load_model, source_identity
from compbench.model_zoo.trained import RECIPE_FILE, TRAINED, TrainedSpec, materialize_trained

TINY = {"dataset": "sst2", "train_rows": 32, "eval_rows": 16, "batch_size": 8, "max_steps": 2,
        "max_length": 32}


def _register(monkeypatch, spec: TrainedSpec) -> None:
    monkeypatch.setitem(TRAINED, spec.name, spec)
    monkeypatch.setitem(presets.PRESETS, spec.name, Preset(
        spec.name, source=f"trained:{spec.name}", family="bert",
        task_head="sequence-classification", max_length=512))


@pytest.fixture
def tiny_teacher(tmp_path, monkeypatch, data_dir) -> TrainedSpec:
    """A tiny SST-2 teacher, in a fresh cache (the stages run in child processes, which see the
    cache through the environment)."""
    monkeypatch.setenv("COMPBENCH_CACHE", str(tmp_path / "cache"))
    spec = TrainedSpec("tiny-teacher", "finetune", {"model": "minilm-l6-v2", "head": "classification",
                                                    **TINY})
    _register(monkeypatch, spec)
    return spec


def test_a_trained_preset_is_made_once_then_loaded_from_the_cache(tiny_teacher, monkeypatch):
    said = []
    folder = materialize_trained(tiny_teacher, echo=said.append)
    assert said and "making tiny-teacher once" in said[0]
    made = json.loads((folder / RECIPE_FILE).read_text())
    assert made["stage"] == "finetune" and 0 <= made["held_out"]["accuracy"] <= 1
    said.clear()
    assert materialize_trained(tiny_teacher, echo=said.append) == folder and not said  # not retrained
    model, _ = load_model(get_preset("tiny-teacher"), device="cpu")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged

    # a child process knows no test presets: the student's teacher is the cached folder
    student = TrainedSpec("tiny-student", "distill", {
        "teacher": str(folder), "head": "classification", **TINY,
        "student_recipe": "structured:ffn=0.3:calibration=sst2:nsamples=2:seqlen=32"})
    _register(monkeypatch, student)
    student_model, _ = load_model(get_preset("tiny-student"), device="cpu")  # distilled on first use
    assert student_model.config.intermediate_size == 1536 - round(0.3 * 1536)
    identity = source_identity(get_preset("tiny-student"))
    assert identity["kind"] == "trained" and len(identity["files"]["model.safetensors"]) == 64


def test_a_damaged_cached_model_is_reported_not_used(tiny_teacher):
    folder = materialize_trained(tiny_teacher, echo=lambda _: None)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(CompbenchError, match="corrupt model cache at .*tiny-teacher"):
        materialize_trained(tiny_teacher, echo=lambda _: None)
