"""Mixed 4/8-bit: the budget rule, and on the real model a result between all-4 and all-8 bits."""

import pytest

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
    ("mixed:5:method=awq", "method must be one of rtn, gptq, bnb"),
    ("mixed:5:method=bnb:group_size=32", "group_size and sym apply to method=rtn or gptq"),
])
def test_bad_mixed_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


@pytest.mark.heavy
def test_bnb_mix_holds_nf4_and_int8_layers_between_their_sizes(fresh_model, perplexity,
                                                               wikitext_ids):
    """Blocks 0-14 NF4, 15-29 LLM.int8(): real bitsandbytes layers of both kinds, a size between
    the all-NF4 and all-int8 models', and a model that still predicts text."""
    from compbench.compressors.bnb import Int8Config, NF4Config, apply_4bit, apply_int8
    from compbench.compressors.mixed import _bnb_mixed
    from compbench.compressors.registry import CompressionContext
    from compbench.compressors.targets import linear_layers
    from compbench.core.measure import state_bytes

    context = CompressionContext()
    model = fresh_model()
    baseline = perplexity(model, wikitext_ids)
    layers = linear_layers(model)
    four = {n: m for n, m in layers.items() if int(n.split(".")[2]) < 15}
    eight = {n: m for n, m in layers.items() if n not in four}
    mixed, stats = _bnb_mixed(model, four, eight, context)
    kinds = {n: type(m).__name__ for n, m in linear_layers(mixed).items()}
    assert {kinds[n] for n in four} == {"Linear4bit"}
    assert {kinds[n] for n in eight} == {"Linear8bitLt"}
    assert stats == {"quantized_layers": 210, "layers_4bit": 105, "layers_8bit": 105}
    size_nf4 = state_bytes(apply_4bit(fresh_model(), NF4Config(), context).model)
    size_int8 = state_bytes(apply_int8(fresh_model(), Int8Config(), context).model)
    assert size_nf4 < state_bytes(mixed) < size_int8
    assert perplexity(mixed, wikitext_ids) < 1.5 * baseline


@pytest.mark.slow
@pytest.mark.parametrize("low, high, mixed", [
    ("rtn:4", "rtn:8", "mixed:6:sensitivity_samples=2:seqlen=256"),
    ("nf4", "int8", "mixed:6:method=bnb:sensitivity_samples=2:seqlen=256"),
])
def test_mixed_lies_between_all_4_and_all_8_bits(low, high, mixed, fresh_model, context,
                                                 perplexity, wikitext_ids):
    results = []
    for recipe in (low, high, mixed):
        result = compress(fresh_model(), parse_recipe(recipe), context)
        results.append((perplexity(result.model, wikitext_ids), result.size_bytes,
                        result.steps[0]["stats"]))
    (ppl4, size4, _), (ppl8, size8, _), (ppl_mixed, size_mixed, stats) = results
    assert size4 < size_mixed < size8
    assert ppl8 < ppl_mixed < ppl4
    assert 5.0 < stats["mean_bits"] <= 6.0 and stats["blocks_8bit"]
