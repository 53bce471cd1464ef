"""Calibration windows: real corpora from the data dir, deterministic, disjoint, clear errors."""

import pytest

from compbench.compressors import parse_recipe
from compbench.compressors.calibration import Calibrated, calibration_ids
from compbench.errors import CompbenchError


def test_windows_are_deterministic_disjoint_and_seeded(tokenizer, context, data_dir):
    config = Calibrated(nsamples=8, seqlen=128, seed=0)
    first, again = calibration_ids(context, config), calibration_ids(context, config)
    assert first.shape == (8, 128)
    assert (first == again).all()
    rows = {tuple(r.tolist()) for r in first}
    assert len(rows) == 8  # disjoint windows, no repeats
    other = calibration_ids(context, Calibrated(nsamples=8, seqlen=128, seed=1))
    assert {tuple(r.tolist()) for r in other} != rows


def test_calibration_reads_the_validation_text_not_the_test_text(tokenizer, context, data_dir):
    import json

    ids = calibration_ids(context, Calibrated(nsamples=1, seqlen=64))
    text = tokenizer.decode(ids[0])
    validation = (data_dir / "wikitext-2-v1" / "validation.jsonl").read_text()
    test = "".join(json.loads(line)["text"] for line in
                   (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines())
    probe = text.strip().split("\n")[0][:40]
    assert probe and probe in validation.replace('\\"', '"') and probe not in test


@pytest.mark.heavy
def test_in_domain_calibration_uses_kasut_training_part_only(tokenizer, context, data_dir):
    from compbench.tasks.choices import load_kasut

    ids = calibration_ids(context, Calibrated("kasut_math", nsamples=16, seqlen=256))
    assert ids.shape == (16, 256)
    parts = load_kasut("kasut", "kasut_math", ["train"])
    assert len(parts["test"]) == 1019
    train, held_out = parts["train"]["question"], parts["test"]["question"]
    # the text between the blank lines that join questions: each long piece comes from a
    # training question; a piece found only in the scored 10% would mean a leak
    pieces = [piece for row in ids for piece in tokenizer.decode(row).split("\n\n")[1:-1]
              if len(piece) > 40]
    assert len(pieces) >= 20  # a leak of 10% of the text would show in one of them
    assert all(any(piece in question for question in train) for piece in pieces)
    assert not [p for p in pieces if any(p in q for q in held_out) and not any(p in q for q in train)]


def test_too_few_tokens_is_one_clear_error(tokenizer, context, data_dir):
    with pytest.raises(CompbenchError, match="too few for nsamples=100000"):
        calibration_ids(context, Calibrated(nsamples=100000, seqlen=512))


def test_missing_data_dir_is_a_clear_error(tokenizer, context, monkeypatch, tmp_path):
    monkeypatch.setenv("COMPBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(CompbenchError, match="no calibration data: .*validation.jsonl not found"):
        calibration_ids(context, Calibrated(nsamples=1, seqlen=64))


@pytest.mark.parametrize("recipe, message", [
    ("gptq:4:calibration=c4", "calibration must be one of wikitext2"),
    ("wanda:0.5:nsamples=0", "nsamples must be >= 1"),
    ("sparsegpt:0.5:seqlen=8", "seqlen must be in"),
])
def test_bad_calibration_options_are_rejected_at_parse_time(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)
