"""The distillation loss, term by term, on cases small enough to work out by hand."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from compbench.compressors import parse_recipe
from compbench.errors import CompbenchError
from compbench.stages.distill import (
    DistillLoss,
    attention_term,
    distill_terms,
    hidden_term,
    kl_term,
    layer_pairs,
    parse_layer_map,
    total_loss,
)


def test_kl_is_t_squared_times_the_kl_of_the_softened_distributions():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # T = 1: teacher (3/4, 1/4) against the student's (1/2, 1/2)
    assert float(kl_term(student, teacher, 1.0)) == pytest.approx(
        0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    # T = 2: the teacher's logits halve, so its odds are sqrt(3) : 1; the term is scaled by 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    expected = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert float(kl_term(student, teacher, 2.0)) == pytest.approx(expected, abs=1e-6)
    assert float(kl_term(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-7)


def test_kl_averages_only_the_masked_positions():
    student = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]])  # the second position is far off
    teacher = torch.tensor([[[0.0, 0.0], [-5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    assert float(kl_term(student, teacher, 1.0, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(kl_term(student, teacher, 1.0)) > 4.0


def test_hidden_mse_sums_the_mapped_pairs_through_the_projection():
    student = [torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.0, 1.0]]])]
    teacher = [torch.tensor([[[1.0, 4.0]]]), torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[2.0, 2.0]]])]
    # pairs (0, 0): mean((0, -2)^2) = 2; (1, 2): mean((-2, -1)^2) = 2.5
    assert float(hidden_term(student, teacher, ((0, 0), (1, 2)), None)) == pytest.approx(4.5)
    doubling = nn.ModuleList([nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)])
    for layer in doubling:
        layer.weight.data = 2 * torch.eye(2)
    # (2, 4) vs (1, 4): 0.5; (0, 2) vs (2, 2): 2
    assert float(hidden_term(student, teacher, ((0, 0), (1, 2)), doubling).detach()) == pytest.approx(2.5)


def test_hidden_mse_skips_padding():
    student = [torch.tensor([[[1.0], [100.0]]])]
    teacher = [torch.tensor([[[0.0], [0.0]]])]
    assert float(hidden_term(student, teacher, ((0, 0),), None, torch.tensor([[1, 0]]))) == 1.0


def test_attention_mse_skips_the_embeddings_and_averages_heads_when_counts_differ():
    student = [torch.full((1, 2, 3, 3), 0.5)]  # layer 1: 2 heads
    teacher = [torch.zeros(1, 4, 3, 3), torch.ones(1, 4, 3, 3)]  # layers 1, 2: 4 heads
    assert float(attention_term(student, teacher, ((0, 0), (1, 2)))) == pytest.approx(0.25)


def test_causal_terms_score_each_position_against_the_next_label():
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[1, 3:] = -100  # padding
    out = SimpleNamespace(logits=logits, hidden_states=None, attentions=None)
    terms = distill_terms(out, out, labels, DistillLoss(ce=1.0, kl=1.0), (), None, None)
    assert float(terms["ce"]) == pytest.approx(float(ForCausalLMLoss(logits, labels, vocab_size=7)), abs=1e-6)
    assert float(terms["kl"]) == pytest.approx(0.0, abs=1e-6)  # the student is its own teacher
    loss = DistillLoss(ce=0.25, kl=0.75)
    assert float(total_loss({"ce": torch.tensor(2.0), "kl": torch.tensor(4.0)}, loss)) == 3.5


def test_layer_maps_default_to_the_same_relative_depth_and_are_checked():
    assert layer_pairs(DistillLoss(), 3, 6) == ((0, 0), (1, 2), (2, 4), (3, 6))
    assert parse_layer_map("0:0, 3:6") == ((0, 0), (3, 6))
    with pytest.raises(CompbenchError, match="'3-6' is not STUDENT:TEACHER"):
        parse_layer_map("3-6")
    with pytest.raises(CompbenchError, match="layer map 4:6: the student has hidden states 0-3"):
        layer_pairs(DistillLoss(layer_map=((4, 6),)), 3, 6)


@pytest.mark.parametrize("fields, message", [
    ({"ce": 0, "kl": 0}, "every distillation weight is 0"),
    ({"kl": -1}, "distillation weight kl must be >= 0"),
    ({"temperature": 0}, "temperature must be > 0"),
])
def test_bad_loss_settings_are_one_clear_error(fields, message):
    with pytest.raises(CompbenchError, match=message):
        DistillLoss(**fields)


STUDENT = "structured:ffn=0.3:calibration=sst2:nsamples=2:seqlen=64"


def _distill_args(teacher, folder, *extra):
    return ["distill", "--teacher", str(teacher), "--student-recipe", STUDENT, "--dataset", "sst2",
            "--hidden", "1", "--train-rows", "48", "--eval-rows", "16", "--max-steps", "6",
            "--eval-steps", "2", "--batch-size", "8", "--max-length", "32", "--learning-rate", "1e-4",
            "--device", "cpu", "--output-dir", str(folder), *extra]


def _record(folder):
    from compbench.records.index import read_record

    (path,) = folder.glob("distill__*.json")
    return read_record(path)


@pytest.fixture(scope="module")
def distilled(minilm_classifier, tmp_path_factory, offline_env):
    """An uninterrupted encoder distillation: a 30%-FFN-pruned student, 6 steps, eval every 2."""
    from compbench.cli.main import main

    folder = tmp_path_factory.mktemp("distill") / "run"
    assert main(_distill_args(minilm_classifier, folder)) == 0
    return folder


@pytest.mark.heavy
def test_an_encoder_student_is_distilled_saved_and_reported(distilled, minilm_classifier):
    import json

    from transformers import AutoModelForSequenceClassification

    record = _record(distilled)
    assert record.recipe == f"{parse_recipe(STUDENT)}+distill:ce=0.5:kl=0.5:hidden=1:T=2"
    assert set(record.tasks["sst2"].metrics) == {"acc,none", "f1_micro,none", "f1_macro,none"}
    log = [json.loads(line) for line in (distilled / "training_log.jsonl").read_text().splitlines()]
    steps = [row for row in log if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3, 4, 5, 6]
    assert all({"loss_ce", "loss_kl", "loss_hidden"} <= set(row) for row in steps)
    assert [row["step"] for row in log if "eval_accuracy" in row] == [2, 4, 6]
    student = AutoModelForSequenceClassification.from_pretrained(distilled / "student")
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_classifier)
    assert student.config.intermediate_size == 1536 - round(0.3 * 1536)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    assert not any("distill" in name for name, _ in student.named_parameters())
    assert record.compression.size_bytes < record.compression.baseline_size_bytes


@pytest.mark.heavy
def test_an_interrupted_distillation_resumes_to_the_same_student(distilled, minilm_classifier, tmp_path,
                                                                 kill_at_checkpoint):
    from safetensors.torch import load_file

    from compbench.cli.main import main

    folder = tmp_path / "run"
    kill_at_checkpoint(_distill_args(minilm_classifier, folder), folder)
    assert not list(folder.glob("distill__*.json"))
    assert main([*_distill_args(minilm_classifier, folder), "--resume"]) == 0
    resumed, uninterrupted = _record(folder), _record(distilled)
    assert resumed.training["resumed_from"] and resumed.run_key == uninterrupted.run_key
    for key, metric in uninterrupted.tasks["sst2"].metrics.items():
        assert resumed.tasks["sst2"].metrics[key].value == metric.value, key
    expected = load_file(distilled / "student" / "model.safetensors")
    for name, tensor in load_file(folder / "student" / "model.safetensors").items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.heavy
def test_a_decoder_student_is_distilled_on_text(tmp_path, checkpoint, data_dir):
    from compbench.cli.main import main

    folder = tmp_path / "causal"
    assert main(["distill", "--teacher", "smollm2-135m", "--head", "causal", "--student-recipe",
                 "structured:ffn=0.25:nsamples=2:seqlen=64", "--kl", "1", "--ce", "0",
                 "--train-rows", "8", "--eval-rows", "4", "--max-steps", "2", "--eval-steps", "2",
                 "--batch-size", "4", "--max-length", "64", "--device", "cpu",
                 "--output-dir", str(folder)]) == 0
    record = _record(folder)
    metrics = record.tasks["distill_held_out"].metrics
    assert metrics["perplexity,none"].value == pytest.approx(math.exp(metrics["loss,none"].value))
    assert record.recipe == f"{parse_recipe('structured:ffn=0.25:nsamples=2:seqlen=64')}+distill:kl=1:T=2"
    assert (folder / "student" / "config.json").is_file()
