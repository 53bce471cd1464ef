"""Fine-tuning data: the mixer's semantics and checks, and classification splits that are the
tasks' own rows."""

import math

import pytest

from compbench.errors import CompbenchError
from compbench.stages.data import mix_sft, parse_mix
from compbench.tasks.classification import classification_splits


def test_a_mix_parses_to_fractions():
    assert parse_mix("gsm8k=1.0, commonsense_qa=0.5") == {"gsm8k": 1.0, "commonsense_qa": 0.5}


@pytest.mark.parametrize("text, message", [
    ("gsm8k=0", "gsm8k=0: a weight is the fraction of that dataset's train split to use, in (0, 1]"),
    ("gsm8k=1.5", "gsm8k=1.5: a weight is the fraction"),
    ("gsm8k=-0.1", "in (0, 1]"),
    ("gsm8k=half", "--mix: gsm8k=half is not a number"),
    ("gsm8k", "'gsm8k' is not NAME=FRACTION"),
    ("nosuch=0.5", "unknown SFT dataset 'nosuch'; known: gsm8k, math, commonsense_qa, mmlu_aux"),
    ("gsm8k=0.5,gsm8k=0.2", "gsm8k is given twice"),
    (" , ", "--mix is empty"),
])
def test_a_bad_mix_is_one_clear_error(text, message):
    with pytest.raises(CompbenchError, match=None) as error:
        parse_mix(text)
    assert message in str(error.value)


def test_the_mix_takes_the_first_fraction_of_each_train_split(data_dir):
    import json

    train, held_out = mix_sft({"gsm8k": 0.01, "commonsense_qa": 0.005}, seed=3,
                              held_out_fraction=0.1, chat=False)
    rows = list(train) + list(held_out)
    gsm8k = [json.loads(line)["question"] for line in
             (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:74]]  # int(0.01 * 7473)
    assert sorted(r["prompt"].rstrip("\n") for r in rows if r["source"] == "gsm8k") == sorted(gsm8k)
    assert sum(r["source"] == "commonsense_qa" for r in rows) == int(0.005 * 9741)
    assert len(held_out) == math.ceil(0.1 * len(rows))  # datasets rounds the test part up
    again, _ = mix_sft({"gsm8k": 0.01, "commonsense_qa": 0.005}, seed=3, held_out_fraction=0.1,
                       chat=False)
    assert list(again) == list(train)  # seeded: the same rows in the same order


def test_math_rows_are_problems_with_their_worked_solutions(data_dir):
    import json

    train, held_out = mix_sft({"math": 0.01, "gsm8k": 0.01}, seed=0, held_out_fraction=0.1, chat=False)
    rows = [r for r in [*train, *held_out] if r["source"] == "math"]
    first = [json.loads(line) for line in
             (data_dir / "math" / "train.jsonl").read_text().splitlines()[:75]]  # 0.01 * 7500
    assert sorted(r["prompt"].rstrip("\n") for r in rows) == sorted(row["problem"] for row in first)
    assert sorted(r["completion"] for r in rows) == sorted(row["solution"] for row in first)


def test_chat_rows_are_messages_for_the_tokenizers_template():
    train, _ = mix_sft({"gsm8k": 0.002}, seed=0, held_out_fraction=0.2, chat=True)
    row = train[0]
    assert row["prompt"][0]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    assert "####" in row["completion"][0]["content"]  # the GSM8K answer, with its final line


def test_a_hub_only_dataset_offline_is_one_clear_error():
    with pytest.raises(CompbenchError, match="mmlu_aux .* is read from the hub, which is not reachable"):
        mix_sft({"mmlu_aux": 1.0}, seed=0, held_out_fraction=0.1, chat=False)


def test_the_kasut_held_out_part_is_the_tasks_test_split():
    from compbench.tasks.choices import load_kasut

    train, held_out, num_labels = classification_splits("kasut_math")
    task = load_kasut("kaggle/classification-of-math-problems-by-kasut-academy", "kasut_math", ["train"])
    assert (len(train), len(held_out), num_labels) == (9170, 1019, 8)
    assert held_out["text"] == [q.strip() for q in task["test"]["question"]]
    assert held_out["label"] == task["test"]["label"]


def test_commonsense_qa_labels_are_the_answer_keys_index():
    train, held_out, num_labels = classification_splits("commonsense_qa")
    assert num_labels == 5 and len(held_out) == 1221
    assert set(train["label"]) == {0, 1, 2, 3, 4}
    assert train[0]["text"].splitlines()[1].startswith("A. ")


def test_labels_that_do_not_fit_the_head_are_an_error():
    with pytest.raises(CompbenchError, match="kasut_math train row .*: label [4-7] does not fit a head "
                                             "of 4 classes \\(labels 0-3\\)"):
        classification_splits("kasut_math", num_labels=4)
