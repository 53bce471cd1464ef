"""bitsandbytes quantizers on the real embedded model: modules replaced, bytes really shrink."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import linear_layers
from compbench.core.measure import state_bytes
from compbench.core.tensors import dense_weight


@pytest.mark.parametrize("recipe, module_type, min_shrink", [
    ("int8", "Linear8bitLt", 3.5),  # int8 weights + one fp32 scale per row: ~4x vs fp32
    ("nf4", "Linear4bit", 6.0),  # 4-bit codes + one fp32 absmax per 64 weights: ~7x vs fp32
    ("fp4", "Linear4bit", 6.0),
    ("nf4:double_quant=true", "Linear4bit", 7.0),  # absmax scales quantized to 8 bit too
])
def test_quantizer_replaces_target_layers_and_shrinks_them(fp32_model, wikitext_ids, recipe,
                                                           module_type, min_shrink):
    before = {n: state_bytes(m) for n, m in linear_layers(fp32_model).items()}
    input_ids = wikitext_ids
    with torch.no_grad():
        reference = fp32_model(input_ids).logits
    result = compress(fp32_model, parse_recipe(recipe))
    layers = linear_layers(result.model)
    assert set(layers) == set(before)
    assert {type(m).__name__ for m in layers.values()} == {module_type}
    assert type(result.model.lm_head).__name__ == "Linear"  # head (tied embedding) kept
    after = {n: state_bytes(m) for n, m in layers.items()}
    assert sum(before.values()) / sum(after.values()) >= min_shrink
    assert result.size_bytes < result.size_bytes_before
    with torch.no_grad():
        logits = result.model(input_ids).logits
    assert torch.isfinite(logits).all()
    # on real text, a quantized model still predicts the original's next token most of the time
    agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean()
    assert agreement > 0.6


def test_int8_dequantizes_close_to_the_original(fp32_model):
    original = {n: m.weight.detach().clone() for n, m in linear_layers(fp32_model).items()}
    quantized = compress(fp32_model, parse_recipe("int8")).model
    for name, module in linear_layers(quantized).items():
        weight = original[name]
        error = (dense_weight(module) - weight).abs()
        # per-row absmax scaling: half a step of rowmax/127, plus bitsandbytes' fp16 cast first
        row_step = weight.abs().amax(dim=1, keepdim=True) / 127
        assert bool((error <= row_step / 2 + weight.abs() * 2**-10 + 1e-6).all()), name
