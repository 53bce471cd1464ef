"""Every bad input is one line on stderr naming the problem, exit 2, no traceback, and no
results file: table-driven over the inputs that once gave a traceback or a silent number."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compbench.cli.main import main

V1 = Path(__file__).parent.parent / "records" / "fixtures" / "v1"


def _data_with(tmp_path, data_dir, dataset, split, edit):
    """A data dir holding one dataset copied from the real one, with one row edited."""
    folder = tmp_path / "data" / dataset
    folder.mkdir(parents=True)
    rows = (data_dir / dataset / f"{split}.jsonl").read_text().splitlines()[:6]
    row = json.loads(rows[2])
    edit(row)
    rows[2] = json.dumps(row)
    (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return str(tmp_path / "data")


TINY = ["--train-rows", "4", "--eval-rows", "4", "--max-steps", "1", "--max-length", "32"]


def _file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def _adapter(tmp_path, task_type, head_rows: int | None = None):
    """A folder with a LoRA adapter config of the given task type; with `head_rows`, weights
    holding only a classification head of that many classes (all a refusal reads)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": task_type, "r": 4, "lora_alpha": 8}))
    if head_rows is not None:
        import torch
        from safetensors.torch import save_file

        save_file({"base_model.model.score.weight": torch.zeros(head_rows, 576)},
                  str(folder / "adapter_model.safetensors"))
    return str(folder)


def _results_with(tmp_path, edit, keep=("fp32", "int8"), edited="fp32"):
    """A results dir with v1 files of the given recipes, the `edited` one edited."""
    folder = tmp_path / "results"
    folder.mkdir()
    for path in V1.glob("*.json"):
        data = json.loads(path.read_text())
        if data["run"]["recipe"] in keep:
            if data["run"]["recipe"] == edited:
                edit(data)
            (folder / path.name).write_text(json.dumps(data))
    return str(folder)


def _blocker(tmp_path):
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file"


def _folder(tmp_path, config):
    folder = tmp_path / "model"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(config)
    return str(folder)


def _gguf(tmp_path, architecture):
    """A tiny but valid GGUF file of the given architecture (one tensor, a 4-piece vocabulary)."""
    import gguf
    import numpy as np

    path = tmp_path / f"tiny-{architecture}.gguf"
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "c", "d"])
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def _gsm8k_with(tmp_path, generation: str) -> str:
    """A task folder with `my_gsm8k`: compbench's gsm8k with its generation_kwargs replaced."""
    from compbench.tasks import TASKS_DIR

    folder = tmp_path / "my_tasks"
    folder.mkdir()
    (folder / "my_gsm8k.yaml").write_text(f"include: {TASKS_DIR / 'gsm8k.yaml'}\ntask: my_gsm8k\n"
                                          f"generation_kwargs: {{{generation}}}\n")
    return str(folder)


def _no_size(data):
    del data["compression"]["size_bytes"]


def _text_metric(data):
    data["eval"]["tasks"]["wikitext2_ppl"]["word_perplexity,none"] = "abc"


CASES = {
    "gold label that names no choice": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "commonsense_qa", "--limit", "5",
                      "--data-dir", _data_with(t, d, "commonsense_qa", "validation",
                                               lambda r: r.update(answerKey="Z"))],
        "validation.jsonl:3: gold label answerKey='Z' is not one of choices.label (A, B, C, D, E)"),
    "too few choices": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "commonsense_qa", "--limit", "5",
                      "--data-dir", _data_with(t, d, "commonsense_qa", "validation",
                                               lambda r: r["choices"].update(label=["A", "B", "C"]))],
        "validation.jsonl:3: choices.label holds 3 choices; the task needs 5"),
    "wrongly typed field": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "sst2", "--limit", "5", "--data-dir",
                      _data_with(t, d, "sst2", "validation", lambda r: r.update(label="1"))],
        "validation.jsonl:3: field 'label' must be int, got str '1'"),
    "math problem without a boxed answer": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "math500", "--limit", "1", "--data-dir",
                      _data_with(t, d, "math", "test500", lambda r: r.update(solution="So it is 5."))],
        "test500.jsonl:3: field 'solution' holds no \\boxed (where the task reads the gold answer)"),
    "chat template on a model without one": (
        lambda t, d: ["eval", "--model", "gemma3-270m", "--recipe", "fp32", "--tasks", "gsm8k_chat",
                      "--limit", "1", "--apply-chat-template"],
        "'gemma3-270m' has no chat template (its tokenizer defines none)"),
    "chat template by a name the model lacks": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "gsm8k_chat", "--limit", "1",
                      "--apply-chat-template", "tool_use"],
        "'smollm2-135m' has no chat template named 'tool_use' (named templates: none;"),
    "few-shot turns without a template": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "gsm8k", "--limit", "1",
                      "--fewshot-as-multiturn"],
        "fewshot_as_multiturn needs a chat template"),
    "max_gen_toks of zero": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "my_gsm8k", "--limit", "1",
                      "--include-path", _gsm8k_with(t, "max_gen_toks: 0")],
        "generation_kwargs: max_gen_toks must be a whole number >= 1 (new tokens per answer), got 0"),
    "an empty stop list": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "my_gsm8k", "--limit", "1",
                      "--include-path", _gsm8k_with(t, "until: []")],
        "generation_kwargs: until must be a stop string or a non-empty list of non-empty stop "
        "strings, got []"),
    "a generation override of zero tokens": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "gsm8k", "--limit", "1",
                      "--gen-kwargs", "max_gen_toks=0"],
        "gen_kwargs: max_gen_toks must be a whole number >= 1 (new tokens per answer), got 0"),
    "a generation override lm-eval's model would not use": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "gsm8k", "--limit", "1",
                      "--gen-kwargs", "max_new_tokens=64"],
        "gen_kwargs: unknown key 'max_new_tokens'; allowed: max_gen_toks, until, do_sample, temperature"),
    "a generation override on tasks that do not generate": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "sst2", "--limit", "1",
                      "--gen-kwargs", "max_gen_toks=64"],
        "gen_kwargs apply to generative tasks only, and none of sst2 generates text; leave them out"),
    "index out of the choices": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "reclor", "--limit", "5", "--data-dir",
                      _data_with(t, d, "reclor", "validation", lambda r: r.update(label=7))],
        "validation.jsonl:3: gold label label=7 is not an index 0-3 into answers"),
    "peft adapter that is not one": (
        lambda t, d: ["lm-eval", "--model", "compressed", "--model_args",
                      "pretrained=smollm2-135m,peft=/no/such/adapter", "--tasks", "sst2", "--limit", "1"],
        "peft=/no/such/adapter: no adapter_config.json there"),
    "revision of the embedded model": (
        lambda t, d: ["lm-eval", "--model", "compressed", "--model_args",
                      "pretrained=smollm2-135m,revision=v2", "--tasks", "sst2", "--limit", "1"],
        "revision=v2 applies to hub models; 'smollm2-135m' is an embedded model"),
    "an argument HFLM would ignore": (
        lambda t, d: ["lm-eval", "--model", "compressed", "--model_args",
                      "pretrained=smollm2-135m,parallelize=True", "--tasks", "sst2", "--limit", "1"],
        "unknown key(s) parallelize"),
    "unknown lm-eval task": (
        lambda t, d: ["lm-eval", "--model", "compressed", "--model_args", "pretrained=smollm2-135m",
                      "--tasks", "nosuchtask"],
        "unknown task(s) nosuchtask; compbench tasks: "),
    "export under a file": (
        lambda t, d: ["export", "--recipe", "int8", str(_blocker(t) / "out")],
        "cannot write the checkpoint to"),
    "report against a baseline that is not there": (
        lambda t, d: ["report", _results_with(t, lambda data: None), "--baseline", "nf4"],
        "no finished run of the baseline recipe 'nf4'"),
    "report to an unwritable place": (
        lambda t, d: ["report", str(V1), "--output", str(_blocker(t) / "report.md")],
        "cannot write the report to"),
    "results under a file": (
        lambda t, d: ["eval", "--recipe", "fp32", "--output-dir", str(_blocker(t) / "out")],
        "cannot write results to"),
    "empty model folder": (
        lambda t, d: ["eval", "--model", _folder(t, None), "--recipe", "fp32"], "has no config.json"),
    "bad config.json": (
        lambda t, d: ["eval", "--model", _folder(t, "{not json"), "--recipe", "fp32"],
        "config.json is not valid JSON"),
    "a GGUF file that is not there": (
        lambda t, d: ["eval", "--model", str(t / "model.gguf"), "--recipe", "fp32"],
        "model.gguf not found"),
    "a .gguf file that is not GGUF": (
        lambda t, d: ["eval", "--model", _file(t, "model.gguf", "not a model"), "--recipe", "fp32"],
        "model.gguf is not a GGUF file"),
    "a GGUF architecture without a verified conversion": (
        lambda t, d: ["eval", "--model", _gguf(t, "phi3"), "--recipe", "fp32", "--tasks",
                      "wikitext2_chunked", "--limit", "1"],
        "tiny-phi3.gguf: GGUF architecture 'phi3' has no verified conversion in compbench (verified: "
        "gemma3, llama, qwen2)"),
    "an encoder preset": (
        lambda t, d: ["eval", "--model", "roberta-large", "--recipe", "fp32"],
        "'roberta-large' is a masked-lm model: lm-eval gives no valid numbers for it; train a "
        "classifier on it"),
    "limit nan": (lambda t, d: ["eval", "--recipe", "fp32", "--limit", "nan"],
                  "expected a whole number of documents >= 1 or a fraction between 0 and 1 "
                  "(per task: TASK=N,TASK=N), got 'nan'"),
    "limit inf": (lambda t, d: ["eval", "--recipe", "fp32", "--limit", "inf"],
                  "a fraction between 0 and 1 (per task: TASK=N,TASK=N), got 'inf'"),
    "limit 2.5": (lambda t, d: ["eval", "--recipe", "fp32", "--limit", "2.5"],
                  "a fraction between 0 and 1 (per task: TASK=N,TASK=N), got '2.5'"),
    "task limit 0": (lambda t, d: ["eval", "--recipe", "fp32", "--limit", "wikitext2_ppl=0"],
                     "--limit: wikitext2_ppl: expected a whole number of documents >= 1"),
    "task limit of a task not run": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "wikitext2_ppl", "--limit", "mmlu_subset=3"],
        "--limit: 'mmlu_subset' is not one of the tasks (wikitext2_ppl); a per-task limit names one of them"),
    "batch size 0": (lambda t, d: ["eval", "--recipe", "fp32", "--batch-size", "0"],
                     "expected a whole number >= 1 or auto, got '0'"),
    "batch size -1": (lambda t, d: ["eval", "--recipe", "fp32", "--batch-size", "-1"],
                      "expected a whole number >= 1 or auto, got '-1'"),
    "batch size many": (lambda t, d: ["eval", "--recipe", "fp32", "--batch-size", "many"],
                        "expected a whole number >= 1 or auto, got 'many'"),
    "max length 0": (lambda t, d: ["eval", "--recipe", "fp32", "--max-length", "0"],
                     "must be >= 1, got 0"),
    "LoRA target modules the model lacks": (
        lambda t, d: ["finetune", "--target-modules", "q_proj,query", *TINY],
        "LoRA target module(s) query not in the model; its linear layers are named: down_proj, "
        "gate_proj, k_proj, o_proj, q_proj, score, up_proj, v_proj (or use all-linear)"),
    "a mixer weight outside (0, 1]": (
        lambda t, d: ["finetune", "--head", "sft", "--mix", "gsm8k=1.5"],
        "--mix: gsm8k=1.5: a weight is the fraction of that dataset's train split to use, in (0, 1]"),
    "an unknown dataset in the mix": (
        lambda t, d: ["finetune", "--head", "sft", "--mix", "gsm8k=1,nosuch=0.5"],
        "unknown SFT dataset 'nosuch'; known: gsm8k, math, commonsense_qa, mmlu_aux"),
    "sft without a mix": (lambda t, d: ["finetune", "--head", "sft"], "head sft needs --mix"),
    "a mix for a classification head": (
        lambda t, d: ["finetune", "--dataset", "sst2", "--mix", "gsm8k=1"],
        "mix does not apply to head classification (classification takes dataset and num_labels; "
        "sft takes mix)"),
    "an unknown classification dataset": (
        lambda t, d: ["finetune", "--dataset", "imdb"],
        "unknown classification dataset 'imdb'; known: kasut_math, sst2, commonsense_qa"),
    "labels that do not fit the head": (
        lambda t, d: ["finetune", "--dataset", "kasut_math", "--num-labels", "4", *TINY],
        "does not fit a head of 4 classes (labels 0-3)"),
    "a base peft cannot train": (
        lambda t, d: ["finetune", "--recipe", "dynamic-int8", *TINY],
        "recipe 'dynamic-int8': the layers dynamic-int8 leaves cannot carry a LoRA adapter"),
    "smoothquant's alpha outside [0, 1]": (
        lambda t, d: ["eval", "--recipe", "smoothquant:1.5+torchao-int8:activations=true",
                      "--tasks", "wikitext2_chunked", "--limit", "1"],
        "smoothquant: alpha must be in [0, 1], got 1.5"),
    "hqq bits it cannot pack": (
        lambda t, d: ["eval", "--recipe", "hqq:5", "--tasks", "wikitext2_chunked", "--limit", "1"],
        "hqq: bits must be one of 2, 3, 4, 8"),
    "owl on a method that is not a calibrated sparsifier": (
        lambda t, d: ["eval", "--recipe", "magnitude:0.7:owl=true", "--tasks", "wikitext2_chunked",
                      "--limit", "1"],
        "magnitude: unknown option 'owl'; 'owl' is an option of sparsegpt, wanda"),
    "a quantized KV cache on a task that does not generate": (
        lambda t, d: ["eval", "--recipe", "fp32", "--kv-cache", "int4", "--tasks", "wikitext2_chunked",
                      "--limit", "1"],
        "--kv-cache int4 quantizes generation's cache, and none of wikitext2_chunked generates text"),
    "a GPTQ base": (
        lambda t, d: ["finetune", "--recipe", "mixed:5:method=gptq", *TINY],
        "the layers mixed:5:method=gptq leaves cannot carry a LoRA adapter"),
    "an unknown key in a finetune config": (
        lambda t, d: ["finetune", "--config", _file(t, "run.yaml", "recipe: int8\nlr: 0.1\n")],
        "unknown key(s) lr; known: model, recipe"),
    "a word for a number in a finetune config": (
        lambda t, d: ["finetune", "--config", _file(t, "run.yaml", "r: sixteen\nlearning_rate: 2e-4\n")],
        "r must be a whole number, got 'sixteen'"),
    "distillation with every weight 0": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--head", "causal", "--student-recipe",
                      "structured:ffn=0.25", "--ce", "0", "--kl", "0"],
        "every distillation weight is 0: set ce, kl, hidden or attention above 0"),
    "a decoder preset as a classification teacher": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--student-recipe", "structured:ffn=0.25"],
        "--teacher smollm2-135m: classification distillation needs a trained classifier"),
    "an encoder as a causal teacher": (
        lambda t, d: ["distill", "--teacher", "minilm-l6-v2", "--head", "causal", "--student-recipe",
                      "structured:ffn=0.25"],
        "--teacher minilm-l6-v2: causal distillation needs a causal LM (this model's head: encoder)"),
    "an unknown causal corpus": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--head", "causal", "--dataset", "c4",
                      "--student-recipe", "structured:ffn=0.25"],
        "causal distillation data must be one of wikitext2, got 'c4'"),
    "a bad layer map": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--head", "causal", "--layer-map", "1-2",
                      "--student-recipe", "structured:ffn=0.25"],
        "layer map: '1-2' is not STUDENT:TEACHER"),
    "a layer map naming layers the models do not have": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--head", "causal", "--layer-map",
                      "0:0,40:30", "--student-recipe", "structured:ffn=0.25:nsamples=1:seqlen=64"],
        "layer map 40:30: the student has hidden states 0-30"),
    "a quantized student": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m", "--head", "causal", "--student-recipe",
                      "structured:ffn=0.25+int8"],
        "distillation trains the student's weights, and int8 leaves them quantized"),
    "a distill run without a student recipe": (
        lambda t, d: ["distill", "--teacher", "smollm2-135m"],
        "distill needs --student-recipe (see --help)"),
    "a classification adapter on a language-model task": (
        lambda t, d: ["eval", "--recipe", "fp32", "--adapter", _adapter(t, "SEQ_CLS", head_rows=2)],
        "with the classification adapter"),
    "a classification adapter without its weights": (
        lambda t, d: ["eval", "--recipe", "fp32", "--tasks", "sst2", "--adapter", _adapter(t, "SEQ_CLS")],
        "no adapter_model.safetensors (the adapter's weights) there"),
    "an adapter merged into a quantized base": (
        lambda t, d: ["export", "--recipe", "nf4", "--adapter", _adapter(t, "CAUSAL_LM"), "--merge",
                      str(t / "merged")],
        "--merge: the base's layers are quantized by nf4"),
    "an adapter config that is not a mapping": (
        lambda t, d: ["eval", "--recipe", "fp32", "--adapter",
                      str(Path(_file(t, "adapter_config.json", "[1, 2]")).parent)],
        "adapter_config.json holds a list, not peft's mapping of settings"),
    "a speed prompt beyond the model's context": (
        lambda t, d: ["speed", "--recipe", "fp32", "--prompt-lengths", "128,8192", "--output",
                      str(t / "out" / "speed.json")],
        "smollm2-135m holds 8192 positions; the longest prompt (8192) and decoding 128 tokens after "
        "the 128-token prompt need 8193: lower --prompt-lengths or --new-tokens"),
    "speed with one new token": (
        lambda t, d: ["speed", "--recipe", "fp32", "--new-tokens", "1"],
        "argument --new-tokens: must be >= 2 (decode speed is timed from the first new token to the last)"),
    "malformed speed prompt lengths": (
        lambda t, d: ["speed", "--recipe", "fp32", "--prompt-lengths", "128,long"],
        "expected comma-separated whole numbers >= 1 (e.g. 128,512,2048), got '128,long'"),
    "an encoder timed for speed": (
        lambda t, d: ["speed", "--model", "minilm-l6-v2", "--recipe", "fp32", "--output",
                      str(t / "out" / "speed.json")],
        "speed times text generation; minilm-l6-v2 has no language-model head (encoder)"),
    "an adapter folder without an adapter": (
        lambda t, d: ["eval", "--recipe", "fp32", "--adapter", str(t)],
        "no adapter_config.json there"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_no_results(case, tmp_path, data_dir, checkpoint, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(data_dir))  # --data-dir changes it; restored after
    make_argv, message = CASES[case]
    argv = make_argv(tmp_path, data_dir)
    if argv[0] in ("eval", "finetune", "distill") and "--output-dir" not in argv:
        argv += ["--device", "cpu", "--output-dir", str(tmp_path / "out")]
    if argv[0] == "lm-eval":  # lm-eval's CLI sets up logging once per process: run it for real
        proc = subprocess.run([sys.executable, "-m", "compbench.cli.main", *argv],
                              capture_output=True, text=True, timeout=600, env=os.environ.copy())
        code, err = proc.returncode, proc.stderr.strip()
    else:
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    if argv[0] == "lm-eval":  # the stock lm_eval CLI logs its progress (INFO) before the error
        assert not [line for line in err.splitlines()[:-1] if " INFO " not in line
                    and "SHOULD ONLY BE USED FOR TESTING" not in line], err
        err = err.splitlines()[-1]
    assert len(err.splitlines()) == 1, err
    assert err.startswith("compbench: error: ") and message in err, err
    assert not list((tmp_path / "out").glob("*.json"))
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


@pytest.mark.parametrize("edit, reason", [(_no_size, "is a malformed compbench results file"),
                                          (_text_metric, "word_perplexity,none is not a number: 'abc'")])
def test_a_malformed_results_file_is_named_and_skipped(edit, reason, tmp_path, capsys):
    folder = _results_with(tmp_path, edit, edited="int8")
    assert main(["report", folder, "--no-plots"]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith("compbench: warning: skipping") and "__int8__" in warning and reason in warning
    rows = [line for line in captured.out.splitlines() if line.startswith("| smollm2")]
    assert len(rows) == 1 and "| fp32 " in rows[0]  # the report of the rest
