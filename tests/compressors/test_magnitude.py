"""Magnitude pruning on the real embedded model: exact sparsity, right layers, mask kept."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import linear_layers
from compbench.core.tensors import dense_weight


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


@pytest.mark.heavy
@pytest.mark.parametrize("quantizer", ["int8", "nf4"])
def test_mask_holds_through_quantization(fp32_model, quantizer):
    pruned = compress(fp32_model, parse_recipe("magnitude:0.5")).model
    masks = {n: (m.weight == 0).clone() for n, m in linear_layers(pruned).items()}
    quantized = compress(pruned, parse_recipe(quantizer)).model
    for name, module in linear_layers(quantized).items():
        assert type(module).__name__ != "Linear"
        assert bool((dense_weight(module)[masks[name]] == 0).all()), name


def _layer_sparsity(model):
    return {n: float((m.weight == 0).float().mean()) for n, m in linear_layers(model).items()}


@pytest.mark.heavy
def test_ranked_raises_the_least_sensitive_blocks(fp32_model, context, data_dir):
    from compbench.compressors.calibration import Calibrated
    from compbench.compressors.recipe import make_step
    from compbench.compressors.sensitivity import measure_sensitivity

    recipe = "magnitude:0.25:scope=ranked:top=3:top_sparsity=0.5:nsamples=1:seqlen=128"
    probe = make_step("magnitude", {"sparsity": 0.5, "scope": "layer"})
    delta = measure_sensitivity(fp32_model, context, probe, "block",
                                Calibrated(nsamples=1, seqlen=128)).delta()
    result = compress(fp32_model, parse_recipe(recipe), context)
    per_layer = _layer_sparsity(result.model)
    raised = {n.rsplit(".", 2)[0] for n, s in per_layer.items() if s == pytest.approx(0.5, abs=1e-3)}
    assert raised == set(sorted(delta, key=lambda b: (delta[b], b))[:3])
    assert all(s == pytest.approx(0.25, abs=1e-3) for n, s in per_layer.items()
               if n.rsplit(".", 2)[0] not in raised)


def test_groups_give_each_named_group_its_sparsity(fp32_model):
    result = compress(fp32_model, parse_recipe("magnitude:0.25:scope=groups:groups=self_attn@0.5"))
    for name, sparsity in _layer_sparsity(result.model).items():
        assert sparsity == pytest.approx(0.5 if "self_attn" in name else 0.25, abs=1e-3), name


def test_single_prunes_one_layer_only(fp32_model):
    layer = "model.layers.3.mlp.down_proj"
    result = compress(fp32_model, parse_recipe(f"magnitude:0.5:scope=single:layer={layer}"))
    per_layer = _layer_sparsity(result.model)
    assert per_layer.pop(layer) == pytest.approx(0.5, abs=1e-6)
    assert max(per_layer.values()) < 0.01  # the others hold only the checkpoint's own exact zeros


@pytest.mark.parametrize("recipe, message", [
    ("magnitude:0.5:scope=single:layer=model.layers.3.mlp.down",
     "did you mean 'model.layers.3.mlp.down_proj'"),
    ("magnitude:0.5:scope=groups:groups=cross_attn@0.5", "matches no target layer"),
])
def test_unknown_layer_names_are_one_clear_error(fp32_model, recipe, message):
    from compbench.errors import CompbenchError

    with pytest.raises(CompbenchError, match=message):
        compress(fp32_model, parse_recipe(recipe))


@pytest.mark.parametrize("recipe, message", [
    ("magnitude:0.5:scope=single", "scope=single needs layer="),
    ("magnitude:0.5:groups=mlp@0.5", "option 'groups' needs scope=groups"),
    ("magnitude:0.5:scope=groups:groups=mlp@1.5", "bad group 'mlp@1.5'"),
    ("magnitude:n=2:m=4:scope=layer", "takes no scope"),
    ("magnitude:1.0", r"sparsity must be in \[0, 1\)"),
])
def test_bad_strategy_options_are_rejected_at_parse_time(recipe, message):
    from compbench.errors import CompbenchError

    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)
