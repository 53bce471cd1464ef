"""One identity per compressed model and per run: canonical spellings share a results file;
anything that can change a number (a step's version, batch size, a data file, the device kind)
makes a new run."""

import dataclasses
import shutil

import pytest

from compbench.artifacts.identity import artifact_identity
from compbench.compressors import Recipe, parse_recipe
from compbench.evaluation.settings import EvalSettings, parse_gen_kwargs
from compbench.evaluation.task_manager import task_manager
from compbench.model_zoo.presets import get_preset
from compbench.orchestration.plan import RunSpec, make_plan

TASKS = ("wikitext2_chunked",)
ONE_CHUNK = EvalSettings(TASKS, limit=1)


def _path(tmp_path, recipe, settings=ONE_CHUNK):
    [run] = make_plan([RunSpec("smollm2-135m", parse_recipe(recipe), settings, device="cpu")],
                      tmp_path).runs
    return run.path


@pytest.mark.parametrize("spellings", [
    ("gptq:4", "gptq:bits=4", "gptq:4:group_size=64:calibration=wikitext2"),
    ("mixed:5", "mixed:5.0", "mixed:budget_bits=5:method=rtn"),
    ("magnitude:0.5", "magnitude:sparsity=0.50:scope=global"),
])
def test_canonical_spellings_share_one_results_file(spellings, checkpoint, data_dir, tmp_path):
    paths = {_path(tmp_path, recipe) for recipe in spellings}
    assert len(paths) == 1
    assert _path(tmp_path, "gptq:3") not in paths


def test_bumping_a_steps_version_makes_a_new_artifact(checkpoint, data_dir):
    preset, recipe = get_preset("smollm2-135m"), parse_recipe("wanda:0.5")
    step = recipe.steps[0]
    bumped = Recipe((dataclasses.replace(step, config=dataclasses.replace(
        step.config, version=step.config.version + 1)),))
    before = artifact_identity(preset, recipe, None, "cpu")
    after = artifact_identity(preset, bumped, None, "cpu")
    assert before["key"] != after["key"]
    assert before["recipe"]["steps"][0]["version"] + 1 == after["recipe"]["steps"][0]["version"]
    assert artifact_identity(preset, recipe, None, "cpu") == before  # stable


def test_identity_names_what_writes_the_weights(checkpoint, data_dir):
    identity = artifact_identity(get_preset("smollm2-135m"), parse_recipe("wanda:0.5+gptq:4"),
                                 None, "cpu")
    assert len(identity["source"]["sha256"]) == 64  # the GGUF's content
    assert {"llmcompressor", "compressed-tensors", "torch", "transformers"} <= set(identity["libraries"])
    assert "bitsandbytes" not in identity["libraries"]
    assert identity["calibration"] == {"dataset": "wikitext2", "nsamples": 32, "seqlen": 512, "seed": 0}
    assert len(identity["calibration_data"]["wikitext2"]) == 64
    fp32 = artifact_identity(get_preset("smollm2-135m"), parse_recipe("magnitude:0.5"), None, "cpu")
    assert fp32["calibration"] is None and fp32["calibration_data"] == {}


def test_batch_size_max_length_and_limit_make_new_runs(checkpoint, data_dir, tmp_path):
    base = _path(tmp_path, "int8")
    assert _path(tmp_path, "int8", EvalSettings(TASKS, limit=1, batch_size=4)) != base
    assert _path(tmp_path, "int8", EvalSettings(TASKS, limit=1, max_length=1024)) != base
    assert _path(tmp_path, "int8", EvalSettings(TASKS, limit=2)) != base
    assert _path(tmp_path, "int8", EvalSettings(TASKS, limit=1)) == base


def test_chat_formatting_makes_a_new_run_and_runs_without_it_keep_their_keys(checkpoint, data_dir,
                                                                              tmp_path):
    base = _path(tmp_path, "fp32")
    templated = [EvalSettings(TASKS, limit=1, apply_chat_template=True),
                 EvalSettings(TASKS, limit=1, apply_chat_template=True, fewshot_as_multiturn=True),
                 EvalSettings(TASKS, limit=1, apply_chat_template=True, system_instruction="Be brief.")]
    paths = {_path(tmp_path, "fp32", settings) for settings in templated}
    assert len(paths) == 3 and base not in paths  # never resumed from a run without a template
    fields = ONE_CHUNK.key_fields(task_manager(tasks=TASKS).task_index, "cpu")
    assert not {"apply_chat_template", "fewshot_as_multiturn", "system_instruction"} & set(fields)


def test_a_generation_override_makes_a_new_run_and_runs_without_one_keep_their_keys(data_dir):
    """`--gen-kwargs` as lm-eval parses it (typed values), in the key only when given."""
    index = task_manager(tasks=("gsm8k",)).task_index
    plain = EvalSettings(("gsm8k",), limit=1)
    longer = EvalSettings(("gsm8k",), limit=1, gen_kwargs=parse_gen_kwargs("max_gen_toks=1024"))
    assert "gen_kwargs" not in plain.key_fields(index, "cpu")
    assert longer.key_fields(index, "cpu")["gen_kwargs"] == {"max_gen_toks": 1024}
    assert parse_gen_kwargs("temperature=0,max_gen_toks=8") == parse_gen_kwargs(
        {"max_gen_toks": 8, "temperature": 0})  # the command line and a sweep's mapping agree


def test_the_device_kind_is_in_the_key_and_the_card_index_is_not(data_dir):
    index = task_manager(tasks=TASKS).task_index
    settings = EvalSettings(TASKS, limit=1)
    cpu, cuda0, cuda1 = (settings.key_fields(index, d) for d in ("cpu", "cuda:0", "cuda:1"))
    assert cpu != cuda0 and cuda0 == cuda1
    preset, recipe = get_preset("smollm2-135m"), parse_recipe("int8")
    assert artifact_identity(preset, recipe, None, "cpu") != artifact_identity(preset, recipe, None, "cuda")


def test_a_changed_data_file_makes_a_new_run(checkpoint, data_dir, tmp_path, monkeypatch):
    base = _path(tmp_path, "fp32")
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "wikitext-2-raw-v1", copy / "wikitext-2-raw-v1")
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(copy))
    assert _path(tmp_path, "fp32") == base  # same bytes elsewhere: same run
    test_file = copy / "wikitext-2-raw-v1" / "test.jsonl"
    test_file.write_text(test_file.read_text().replace("Boulter", "Boulton", 1))
    assert _path(tmp_path, "fp32") != base


def test_calibration_options_on_data_free_magnitude_are_an_error():
    from compbench.errors import CompbenchError

    with pytest.raises(CompbenchError, match=r"calibration options \(seed\) apply to scope=ranked only"):
        parse_recipe("magnitude:0.5:seed=7")
