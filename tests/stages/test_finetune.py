"""The fine-tuning stage on the real embedded model and real data, with tiny budgets: a
classification head (and its resume after SIGKILL), QLoRA SFT on an NF4 base (its adapter
reloads to the same logits and evaluates through lm-eval), merging an adapter on export."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compbench.cli.main import main
from compbench.records.index import load_results, read_record

CLASSIFY = ["finetune", "--recipe", "fp32", "--dataset", "kasut_math", "--train-rows", "48",
            "--eval-rows", "16", "--max-steps", "6", "--eval-steps", "2", "--batch-size", "4",
            "--max-length", "64", "--r", "4", "--alpha", "8", "--learning-rate", "1e-3",
            "--device", "cpu"]


def _result(folder: Path):
    (path,) = folder.glob("finetune__*.json")
    return read_record(path)


def _adapter_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def classified(tmp_path_factory, offline_env):
    """An uninterrupted classification run (fp32 base, LoRA r=4, 6 steps, evaluated every 2)."""
    folder = tmp_path_factory.mktemp("classify") / "run"
    assert main([*CLASSIFY, "--output-dir", str(folder)]) == 0
    return folder


@pytest.mark.heavy
def test_a_classification_run_keeps_its_best_checkpoint_and_reports_it(classified):
    record = _result(classified)
    assert record.ok and record.recipe == "fp32+lora:r=4:alpha=8"
    metrics = record.tasks["kasut_math"].metrics
    assert set(metrics) == {"acc,none", "f1_micro,none", "f1_macro,none"}
    log = [json.loads(line) for line in (classified / "training_log.jsonl").read_text().splitlines()]
    evals = [row for row in log if "eval_f1_micro" in row]
    assert [row["step"] for row in evals] == [2, 4, 6]
    best = max(evals, key=lambda row: row["eval_f1_micro"])
    assert metrics["f1_micro,none"].value == best["eval_f1_micro"]
    assert metrics["f1_macro,none"].value == best["eval_f1_macro"]
    assert record.training["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert [row["step"] for row in log if "loss" in row] == [1, 2, 3, 4, 5, 6]
    adapter = record.training["adapter_bytes"]
    assert adapter == (classified / "adapter" / "adapter_model.safetensors").stat().st_size
    assert record.compression.size_bytes == record.training["base_size_bytes"] + adapter
    assert (classified / "loss_curve.png").stat().st_size > 10_000
    config = json.loads((classified / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    # a report over the run folder reads the results file, not the adapter's or checkpoints' JSON
    assert [r.recipe for r in load_results(classified)] == ["fp32+lora:r=4:alpha=8"]


@pytest.mark.heavy
def test_resume_after_sigkill_ends_as_an_uninterrupted_run(classified, tmp_path, kill_at_checkpoint):
    folder = tmp_path / "run"
    kill_at_checkpoint([*CLASSIFY, "--output-dir", str(folder)], folder)
    assert not list(folder.glob("finetune__*.json"))  # killed mid-training
    assert main([*CLASSIFY, "--output-dir", str(folder), "--resume"]) == 0
    resumed, uninterrupted = _result(folder), _result(classified)
    assert resumed.training["resumed_from"].split("checkpoints/")[1].startswith("checkpoint-")
    assert resumed.run_key == uninterrupted.run_key
    for key, metric in uninterrupted.tasks["kasut_math"].metrics.items():
        assert resumed.tasks["kasut_math"].metrics[key].value == metric.value, key
    expected = _adapter_tensors(classified)
    for name, tensor in _adapter_tensors(folder).items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.heavy
def test_qlora_sft_lowers_held_out_loss_and_its_adapter_reloads_to_the_same_logits(tmp_path, tokenizer):
    from compbench.artifacts.adapter import read_adapter, with_adapter
    from compbench.artifacts.build import build
    from compbench.stages.finetune_run import job_from, run_finetune

    job = job_from({"recipe": "nf4:double_quant=true", "head": "sft",
                    "mix": "gsm8k=0.004,commonsense_qa=0.003", "max_steps": 6, "eval_steps": 3,
                    "batch_size": 2, "max_length": 128, "eval_rows": 8, "learning_rate": 1e-3,
                    "r": 8, "alpha": 16, "device": "cpu", "output_dir": str(tmp_path / "sft")})
    record, trained = run_finetune(job, echo=lambda line: None)
    before, best = record.training["before"], record.training["best"]
    assert best["loss"] < before["loss"] and best["step"] > 0
    assert record.tasks["sft_held_out"].metrics["perplexity,none"].value == pytest.approx(
        torch.tensor(best["loss"]).exp().item())
    ids = tokenizer(["Question: what is 12 + 30?\nAnswer:"], return_tensors="pt").input_ids
    with torch.no_grad():
        expected = trained.model(ids).logits
    base = build("smollm2-135m", "nf4:double_quant=true", device="cpu")
    reloaded = with_adapter(base, read_adapter(tmp_path / "sft" / "adapter"))  # training's path
    assert reloaded.compute_path.endswith("without the CPU bf16 repack, as the adapter was trained")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(ids).logits, expected, rtol=0, atol=1e-5)
    assert reloaded.recipe.steps[0].method == "nf4"
    assert reloaded.identity["adapter"]["label"] == "lora:r=8:alpha=16"

    out = tmp_path / "eval"
    assert main(["eval", "--recipe", "nf4:double_quant=true", "--adapter", str(tmp_path / "sft" / "adapter"),
                 "--tasks", "commonsense_qa", "--limit", "2", "--device", "cpu", "--no-store",
                 "--output-dir", str(out)]) == 0
    (evaluated,) = load_results(out)
    assert evaluated.recipe == "nf4:double_quant=true+lora:r=8:alpha=16"
    assert evaluated.compression.size_bytes == (record.training["base_size_bytes"]
                                                + record.training["adapter_bytes"])


def test_export_merges_an_adapter_into_a_float_base(tmp_path, fp32_model, tokenizer):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = get_peft_model(fp32_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    lora.save_pretrained(tmp_path / "adapter")
    ids = tokenizer(["The history of the region is long."], return_tensors="pt").input_ids
    with torch.no_grad():
        expected = lora(ids).logits
        plain = lora.get_base_model()
        with lora.disable_adapter():
            unadapted = plain(ids).logits
    assert main(["export", "--recipe", "fp32", "--adapter", str(tmp_path / "adapter"), "--merge",
                 str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        logits = merged(ids).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)
    assert (logits - unadapted).abs().max() > 1e-2  # the adapter changed the model
    assert not isinstance(merged, PeftModel) and not (tmp_path / "merged" / "adapter").exists()


@pytest.mark.heavy
def test_a_classification_adapter_exported_merged_scores_as_its_run_did(classified, tmp_path, capsys):
    """The merged export of a classification adapter is a plain *ForSequenceClassification
    folder, and export says how compbench scores it (lm-eval scores language models only);
    `compbench eval` scores it on the held-out rows the run's best checkpoint was scored on,
    with the same numbers."""
    merged = tmp_path / "merged"
    assert main(["export", "--recipe", "fp32", "--adapter", str(classified / "adapter"), "--merge",
                 str(merged)]) == 0
    said = capsys.readouterr().out
    assert f"compbench eval --model {merged} --recipe fp32 --tasks DATASET" in said and "lm_eval" not in said
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(merged), "--recipe", "fp32", "--tasks", "kasut_math",
                 "--limit", "16", "--max-length", "64", "--batch-size", "4", "--device", "cpu",
                 "--output-dir", str(out)]) == 0
    (record,) = load_results(out)
    trained = _result(classified).tasks["kasut_math"].metrics
    for key in ("acc,none", "f1_micro,none", "f1_macro,none"):
        assert record.tasks["kasut_math"].metrics[key].value == pytest.approx(trained[key].value,
                                                                              abs=1e-9), key


@pytest.mark.slow
def test_accelerate_launch_trains_data_parallel_on_two_cpu_processes(tmp_path):
    """The same command under `accelerate launch` (2 CPU processes, gloo): each optimizer step
    takes a batch on each process, so an epoch of 16 rows at batch 4 is 2 steps, not 4; rank 0
    alone writes the adapter and the record."""
    folder = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "compbench.cli.main", "finetune", "--recipe", "nf4", "--dataset", "kasut_math",
               "--train-rows", "16", "--eval-rows", "8", "--epochs", "1", "--batch-size", "4",
               "--max-length", "64", "--r", "4", "--alpha", "8", "--output-dir", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = _result(folder)
    assert record.training["processes"] == 2 and record.training["steps"] == 2
    assert record.training["train_rows"] == 16
    log = [json.loads(line) for line in (folder / "training_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2]
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()


def test_sft_rows_whose_answers_truncation_removes_are_an_error_not_an_empty_eval(tmp_path, capsys):
    """trl drops a row whose answer lies beyond max_length; with none left the Trainer would
    fail deep inside ('eval_loss' missing), so the stage says so first."""
    code = main(["finetune", "--head", "sft", "--mix", "gsm8k=0.01", "--max-steps", "1",
                 "--max-length", "16", "--device", "cpu", "--output-dir", str(tmp_path / "run")])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("compbench: error: --max-length 16: the answer of every training row lies "
                    "beyond it (trl drops rows left with no answer token); raise --max-length")
