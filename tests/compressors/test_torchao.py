"""torchao int8 on the real embedded model: weights really int8, sizes measured, stock reload."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import linear_layers
from compbench.core.measure import state_bytes
from compbench.core.tensors import dense_weight, is_quantized_linear


@pytest.mark.parametrize("recipe", ["torchao-int8", "torchao-int8:activations=true"])
def test_int8_weights_take_a_quarter_of_fp32_and_the_model_still_predicts(
        recipe, fp32_model, wikitext_ids):
    original = {n: m.weight.detach().clone() for n, m in linear_layers(fp32_model).items()}
    before = sum(state_bytes(m) for m in linear_layers(fp32_model).values())
    with torch.no_grad():
        reference = fp32_model(wikitext_ids).logits
    result = compress(fp32_model, parse_recipe(recipe))
    layers = linear_layers(result.model)
    assert set(layers) == set(original)
    assert all(is_quantized_linear(m) for m in layers.values())
    assert not is_quantized_linear(result.model.lm_head)  # the tied head stays in float
    for module in layers.values():  # each weight stores an int8 tensor of its full shape
        inner = [getattr(module.weight, name) for name in module.weight.__tensor_flatten__()[0]]
        assert any(t.dtype == torch.int8 and t.shape == module.weight.shape for t in inner)
    after = sum(state_bytes(m) for m in layers.values())
    # one byte a weight plus one fp32 scale per output row: just over a quarter of fp32
    assert 0.25 < after / before < 0.26
    for name, module in layers.items():
        weight = original[name]
        row_step = weight.abs().amax(dim=1, keepdim=True) / 127
        assert bool(((dense_weight(module) - weight).abs() <= row_step / 2 + 1e-6).all()), name
    with torch.no_grad():
        logits = result.model(wikitext_ids).logits
    agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean()
    assert agreement > 0.8


def test_saved_checkpoint_reloads_with_stock_from_pretrained(fp32_model, wikitext_ids, tmp_path):
    from transformers import AutoModelForCausalLM

    quantized = compress(fp32_model, parse_recipe("torchao-int8")).model
    quantized.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, device_map={"": "cpu"})
    assert all(is_quantized_linear(m) for m in linear_layers(reloaded).values())
    with torch.no_grad():
        expected = quantized(wikitext_ids).logits
        actual = reloaded(wikitext_ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
