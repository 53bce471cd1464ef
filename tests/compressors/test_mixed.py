"""Mixed 4/8-bit: the budget rule, and on the real model a result between all-4 and all-8 bits."""

import math

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.mixed import assign_bits
from compbench.errors import CompbenchError


def test_the_most_sensitive_units_get_8_bits_within_the_budget():
    sizes = {"a": 100, "b": 100, "c": 100, "d": 100}
    sensitivity = {"a": 0.01, "b": 0.30, "c": 0.10, "d": 0.20}
    assert assign_bits(sizes, sensitivity, 4.0) == dict.fromkeys(sizes, 4)
    assert assign_bits(sizes, sensitivity, 5.0) == {"a": 4, "b": 8, "c": 4, "d": 4}
    assert assign_bits(sizes, sensitivity, 6.0) == {"a": 4, "b": 8, "c": 4, "d": 8}
    assert assign_bits(sizes, sensitivity, 8.0) == dict.fromkeys(sizes, 8)


@pytest.mark.parametrize("recipe, message", [
    ("mixed:3", r"budget_bits must be in \[4, 8\]"),
    ("mixed:5:method=awq", "method must be one of rtn, gptq"),
])
def test_bad_mixed_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


@pytest.mark.slow
def test_mixed_lies_between_all_4_and_all_8_bits(checkpoint, wikitext_ids, data_dir):
    from transformers import AutoTokenizer

    from compbench.model_zoo import get_preset, load_model

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    preset = get_preset("smollm2-135m")
    results = {}
    for recipe in ("rtn:4", "rtn:8", "mixed:6:sensitivity_samples=2:seqlen=256"):
        model, _ = load_model(preset, device="cpu")
        model.compbench_compressible = preset.compressible
        result = compress(model, parse_recipe(recipe), tokenizer)
        with torch.no_grad():
            loss = float(result.model(wikitext_ids, labels=wikitext_ids).loss)
        results[recipe.split(":s")[0]] = (math.exp(loss), result.size_bytes, result.steps[0]["stats"])
    (ppl4, size4, _), (ppl8, size8, _), (ppl_mixed, size_mixed, stats) = results.values()
    assert size4 < size_mixed < size8
    assert ppl8 < ppl_mixed < ppl4
    assert 5.0 < stats["mean_bits"] <= 6.0 and stats["blocks_8bit"]
