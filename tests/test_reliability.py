"""Reliability, round 3: the edges of the newer commands, a store and checkpoints that check what
they load, no orphan on SIGTERM, adapters scored again. Each case once gave a traceback, a
silently wrong answer, a hang or an orphaned process (docs/reliability.md lists them)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from compbench.cli.main import main


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _file(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _sweep(tmp_path, extra: str) -> str:
    return _file(tmp_path, "sweep.yaml", "models: [smollm2-135m]\nrecipes: [fp32]\n"
                                         "tasks: [wikitext2_chunked]\nlimit: 1\n" + extra)


def _folder_with_config(tmp_path, **changes) -> str:
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.sources import resolve_source

    source = Path(resolve_source(get_preset("smollm2-135m")))
    config = json.loads((source / "config.json").read_text())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return str(folder)


def _truncated_gguf(tmp_path) -> str:
    """The embedded SmolLM2 GGUF cut in half (a download that stopped)."""
    from compbench.model_zoo.embedded import gguf_path

    data = Path(gguf_path()).read_bytes()
    (tmp_path / "half.gguf").write_bytes(data[:len(data) // 2])
    return str(tmp_path / "half.gguf")


def _gate_files(tmp_path, recorded_recipes) -> list[str]:
    """A results folder of the v1 fixture's fp32 and int8 runs, and a baseline recording
    `recorded_recipes` for them."""
    import yaml

    from compbench.records.index import load_results
    from compbench.reports.gate import entry_of

    fixtures = Path(__file__).parent / "records" / "fixtures" / "v1"
    results = tmp_path / "results"
    results.mkdir()
    for path in fixtures.glob("*.json"):
        data = json.loads(path.read_text())
        if data["run"]["recipe"] in ("fp32", "int8"):
            (results / path.name).write_text(json.dumps(data))
    records = {r.recipe: r for r in load_results(results)}
    runs = [entry_of(records["fp32"])]
    for recipe in recorded_recipes:
        entry = entry_of(records["int8"])
        runs.append({**entry, "recipe": recipe})
    baseline = _file(tmp_path, "baseline.yaml", yaml.safe_dump({"runs": runs}))
    return [baseline, str(results)]


def _only_fp32(tmp_path) -> list[str]:
    baseline, results = _gate_files(tmp_path, [])
    for path in Path(results).glob("*.json"):
        if json.loads(path.read_text())["run"]["recipe"] != "fp32":
            path.unlink()
    return [baseline, results]


CASES = {
    "a gate whose baseline names a run the results lack": (
        lambda t: ["gate", "--baseline", *_gate_files(t, ["int8", "nf4"])[:1], "--results",
                   str(t / "results")],
        "1 run(s) that", "are not in the results: smollm2-135m nf4"),
    "a gate with nothing to check": (
        lambda t: ["gate", "--baseline", (files := _only_fp32(t))[0], "--results", files[1]],
        "the results hold no compressed run to check"),
    "store prune with a negative age": (
        lambda t: ["store", "prune", "--unused-days", "-1", "--store", str(t / "store")],
        "--unused-days: must be a number of days >= 0, got -1"),
    "store list pointed at a file": (
        lambda t: ["store", "list", "--store", _file(t, "store", "not a folder")],
        "is a file; give a folder"),
    "a model folder whose config has a word for a size": (
        lambda t: ["eval", "--model", _folder_with_config(t, hidden_size="big"), "--recipe", "fp32"],
        "hidden_size is 'big'; it must be a whole number >= 1"),
    "a truncated GGUF file": (
        lambda t: ["eval", "--model", _truncated_gguf(t), "--recipe", "fp32", "--tasks", "wikitext2_chunked"],
        "is not a readable GGUF file: truncated or damaged"),
    "an unknown device in eval": (
        lambda t: ["eval", "--recipe", "fp32", "--device", "tpu"],
        "--device tpu: not a device compbench runs on; use cpu, cuda or cuda:N"),
    "an unknown device in a sweep file (even with --dry-run)": (
        lambda t: ["sweep", _sweep(t, "device: tpu\n"), "--dry-run"],
        "device: tpu: not a device compbench runs on"),
    "a negative calibration seed in a sweep": (
        lambda t: ["sweep", _sweep(t, "seeds: [-1]\n"), "--dry-run"],
        "seeds: a calibration seed is a whole number >= 0, got -1"),
    "finetune --resume with nothing to resume": (
        lambda t: ["finetune", "--dataset", "sst2", "--max-steps", "1", "--resume", "--output-dir",
                   str(t / "run")],
        "holds no complete checkpoint to continue from; run without --resume"),
    "a task folder with a broken YAML beside a built-in task": (
        lambda t: ["eval", "--recipe", "fp32", "--tasks", "wikitext2_chunked", "--include-path",
                   str(Path(_file(t, "tasks/broken.yaml", "task: x\n  bad: [indent")).parent)],
        "broken.yaml:2 is not valid YAML"),
    "a task folder whose YAML is not a mapping": (
        lambda t: ["eval", "--recipe", "fp32", "--tasks", "mine", "--include-path",
                   str(Path(_file(t, "tasks/mine.yaml", "- task: mine\n")).parent)],
        "holds a list, not an lm-eval task"),
    "a Ray address nothing answers at": (
        lambda t: ["sweep", _sweep(t, ""), "--executor", "ray", "--ray-address", "127.0.0.1:9",
                   "--output-dir", str(t / "out"), "--no-store"],
        "--ray-address 127.0.0.1:9: no Ray cluster answers there within 10 s"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_is_one_line_and_exit_2(case, tmp_path, data_dir, checkpoint, capsys):
    make_argv, *messages = CASES[case]
    argv = make_argv(tmp_path)
    started = time.monotonic()
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("compbench: error: ") and all(m in err for m in messages), err
    assert time.monotonic() - started < 30  # no hang (Ray retried an unreachable address for 300 s)


def test_store_prune_says_what_it_would_remove_before_it_removes(tmp_path, capsys):
    from compbench.artifacts.store import ModelStore

    stale = tmp_path / "store" / "0123abcd"
    stale.mkdir(parents=True)
    (stale / "artifact.json").write_text("{}")
    code, out, _ = _run(["store", "prune", "--dry-run", "--store", str(tmp_path / "store")], capsys)
    assert code == 0 and f"would remove {stale} (unreadable" in out and "nothing removed" in out
    assert stale.is_dir()
    code, out, _ = _run(["store", "prune", "--store", str(tmp_path / "store")], capsys)
    assert code == 0 and f"removed {stale}" in out and not stale.exists()
    assert ModelStore(tmp_path / "store").entries() == []


@pytest.mark.heavy
def test_a_damaged_stored_model_is_refused_and_rebuilt(tmp_path, checkpoint, data_dir, capsys):
    from compbench.artifacts.build import build
    from compbench.artifacts.store import ModelStore

    store = ModelStore(tmp_path / "store")
    first = build("smollm2-135m", "magnitude:0.1", device="cpu", store=store)
    assert first.origin == "compressed, stored"
    [entry] = store.entries()
    weights = entry.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    weights.write_bytes(bytes(data))
    assert store.damage(entry) == "model.safetensors changed (its sha256 differs from the one recorded)"
    again = build("smollm2-135m", "magnitude:0.1", device="cpu", store=store)
    err = capsys.readouterr().err
    assert "is damaged: model.safetensors changed" in err and "compressing again" in err
    assert again.origin == "compressed, stored"  # rebuilt, not loaded
    [rebuilt] = store.entries()
    assert store.damage(rebuilt) is None
    assert build("smollm2-135m", "magnitude:0.1", device="cpu", store=store).origin == "loaded from store"


def test_a_damaged_checkpoint_is_refused_and_kept_an_incomplete_one_set_aside(tmp_path):
    from compbench.errors import CompbenchError
    from compbench.stages.training import last_complete_checkpoint, write_checkpoint_manifest

    folder = tmp_path / "checkpoints"
    for step in (2, 4):
        checkpoint = folder / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (checkpoint / "model.safetensors").write_bytes(bytes(range(256)) * step)
        write_checkpoint_manifest(checkpoint)
    (folder / "checkpoint-6").mkdir()  # a kill while saving: no trainer state, no manifest
    said = []
    assert last_complete_checkpoint(folder, echo=said.append) == folder / "checkpoint-4"
    assert (folder / "incomplete-checkpoint-6").is_dir() and said[0].startswith("checkpoint-6 is incomplete")
    damaged = folder / "checkpoint-4" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CompbenchError, match="checkpoint-4 is damaged .*kept for inspection"):
        last_complete_checkpoint(folder)
    assert damaged.is_file()  # never deleted


def test_an_adapter_trained_on_another_model_is_refused(tmp_path, checkpoint, data_dir, capsys):
    from compbench.artifacts.adapter import BASE_FILE

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8}))
    (folder / BASE_FILE).write_text(json.dumps({"preset": "gemma3-270m", "recipe": "fp32", "source": {
        "preset": "gemma3-270m", "kind": "gguf-file", "sha256": "0" * 64}}))
    code, _, err = _run(["eval", "--recipe", "fp32", "--adapter", str(folder), "--device", "cpu",
                         "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "was trained on gemma3-270m, not on smollm2-135m (other weights)" in err


@pytest.mark.heavy
def test_an_adapter_of_other_shapes_is_one_line(tmp_path, checkpoint, data_dir, capsys):
    """A LoRA adapter made for a narrower llama: torch names each of its mismatched tensors;
    compbench says how many in one line."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    small = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=30, num_attention_heads=4,
                                         num_key_value_heads=4))
    peft_model = get_peft_model(small, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    code, _, err = _run(["eval", "--recipe", "fp32", "--adapter", str(tmp_path / "adapter"),
                         "--tasks", "wikitext2_chunked", "--limit", "1", "--device", "cpu",
                         "--no-store", "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("compbench: error:")]
    assert len(lines) == 1 and "tensor(s) differ in shape, e.g. size mismatch for" in lines[0], err
    assert "does not fit smollm2-135m" in lines[0] and len(err.splitlines()) <= 3, err


@pytest.mark.heavy
def test_sigterm_while_a_trained_preset_builds_leaves_no_process(tmp_path, data_dir):
    """SIGTERM to `compbench models --build` while its worker trains: every process it started
    ends, and the build left behind (checkpoints, no half folder) is resumable."""
    env = {**os.environ, "COMPBENCH_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "compbench.cli.main", "models", "--build",
                             "minilm-l6-v2-sst2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    announced = proc.stdout.readline()
    assert announced.startswith("building preset minilm-l6-v2-sst2: finetune of minilm-l6-v2, 400 "
                                "training steps, about 5.5 minutes"), announced
    deadline = time.monotonic() + 300
    children = []
    while time.monotonic() < deadline and not children:
        children = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.5)
    assert children, "the build started no worker"
    time.sleep(15)  # the worker is loading the base and training
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in proc.stderr.read()
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, [p.pid for p in alive]
    built = list((tmp_path / "cache" / "models").glob("minilm-l6-v2-sst2-*"))
    assert not [p for p in built if not p.name.endswith(".lock")]  # no half model under the name


@pytest.mark.heavy
def test_a_classification_adapter_on_a_4bit_base_is_scored_again_as_its_run_scored_it(tmp_path, data_dir,
                                                                                     capsys):
    """A classification head trained on an NF4 base, scored later by `compbench eval --adapter`
    on the same held-out rows, through the compute path training used: the run's own numbers."""
    from compbench.records.index import load_results

    run = tmp_path / "run"
    assert main(["finetune", "--recipe", "nf4", "--dataset", "kasut_math", "--train-rows", "16",
                 "--eval-rows", "12", "--max-steps", "2", "--batch-size", "4", "--max-length", "48",
                 "--r", "4", "--alpha", "8", "--device", "cpu", "--output-dir", str(run)]) == 0
    [trained] = load_results(run)
    out = tmp_path / "eval"
    assert main(["eval", "--recipe", "nf4", "--adapter", str(run / "adapter"), "--tasks", "kasut_math",
                 "--limit", "12", "--max-length", "48", "--batch-size", "4", "--device", "cpu",
                 "--no-store", "--output-dir", str(out)]) == 0
    [scored] = load_results(out)
    assert scored.model["compute_path"].endswith("as the adapter was trained")
    for key in ("acc,none", "f1_micro,none", "f1_macro,none"):
        assert scored.metric("kasut_math", key).value == pytest.approx(
            trained.metric("kasut_math", key).value, abs=1e-9), key
    assert scored.tasks["kasut_math"].n_effective == 12
