"""Magnitude pruning on the real embedded model: exact sparsity, right layers, mask kept."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import dense_weight, linear_layers


def _zeros_and_total(model):
    weights = [dense_weight(m) for m in linear_layers(model).values()]
    return sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)


def test_targets_are_the_decoder_linears_only(fp32_model):
    layers = linear_layers(fp32_model)
    assert len(layers) == 30 * 7  # 30 blocks x (q, k, v, o, gate, up, down)
    assert not any("lm_head" in n or "embed" in n for n in layers)


@pytest.mark.parametrize("sparsity", [0.25, 0.5])
def test_global_magnitude_reaches_the_exact_sparsity(fp32_model, sparsity):
    embedding_before = fp32_model.model.embed_tokens.weight.clone()
    result = compress(fp32_model, parse_recipe(f"magnitude:{sparsity}"))
    zeros, total = _zeros_and_total(result.model)
    assert zeros == round(sparsity * total)
    assert result.steps[0]["stats"]["sparsity"] == pytest.approx(zeros / total, abs=0)
    # embeddings (tied with lm_head) untouched
    assert torch.equal(result.model.model.embed_tokens.weight, embedding_before)
    # a global threshold prunes layers unevenly
    per_layer = [float((m.weight == 0).float().mean()) for m in linear_layers(result.model).values()]
    assert max(per_layer) - min(per_layer) > 0.05


def test_global_prunes_the_smallest_weights(fp32_model):
    before = {n: m.weight.detach().abs().clone() for n, m in linear_layers(fp32_model).items()}
    result = compress(fp32_model, parse_recipe("magnitude:0.5"))
    kept_min = min(before[n][m.weight != 0].min() for n, m in linear_layers(result.model).items())
    pruned_max = max(before[n][m.weight == 0].max() for n, m in linear_layers(result.model).items())
    assert pruned_max <= kept_min


def test_layer_scope_prunes_every_layer_to_the_sparsity(fp32_model):
    result = compress(fp32_model, parse_recipe("magnitude:0.5:scope=layer"))
    for name, module in linear_layers(result.model).items():
        n = module.weight.numel()
        assert int((module.weight == 0).sum()) == round(0.5 * n), name


@pytest.mark.parametrize("quantizer", ["int8", "nf4"])
def test_mask_holds_through_quantization(fp32_model, quantizer):
    pruned = compress(fp32_model, parse_recipe("magnitude:0.5")).model
    masks = {n: (m.weight == 0).clone() for n, m in linear_layers(pruned).items()}
    quantized = compress(pruned, parse_recipe(quantizer)).model
    for name, module in linear_layers(quantized).items():
        assert type(module).__name__ != "Linear"
        assert bool((dense_weight(module)[masks[name]] == 0).all()), name
