"""Wanda and SparseGPT on the real model: exact sparsity, exact N:M, determinism, far below magnitude."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.nm import follows_nm
from compbench.compressors.targets import linear_layers
from compbench.errors import CompbenchError

CALIBRATION = "nsamples=8:seqlen=256"
# tests of a structural property (mask shapes, determinism) need calibration, not a good one
SHAPE_CALIBRATION = "nsamples=2:seqlen=128"


@pytest.fixture(scope="module")
def magnitude_ppl(wikitext_ids, checkpoint, perplexity):
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    model, _ = load_model(get_preset("smollm2-135m"), device="cpu")
    return perplexity(compress(model, parse_recipe("magnitude:0.6")).model, wikitext_ids)


@pytest.mark.heavy
@pytest.mark.parametrize("method, updates_kept_weights", [("wanda", False), ("sparsegpt", True)])
def test_unstructured_pruning_is_exact_and_far_better_than_magnitude(
        method, updates_kept_weights, context, wikitext_ids, magnitude_ppl, fresh_model, perplexity):
    original = fresh_model()
    result = compress(fresh_model(), parse_recipe(f"{method}:0.6:{CALIBRATION}"), context)
    zeros = total = 0
    for name, module in linear_layers(result.model).items():
        weight = module.weight
        # per row (Wanda) or per block, 0.6 of a width rounds to whole weights: 1/width of slack
        tolerance = 1 / weight.shape[1] + 0.0005
        assert float((weight == 0).float().mean()) == pytest.approx(0.6, abs=tolerance), name
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
    assert zeros / total == pytest.approx(0.6, abs=0.001)  # within 0.1 percentage point
    assert result.steps[0]["stats"]["sparsity"] == zeros / total
    # SparseGPT reconstructs the kept weights; Wanda only masks
    weight = result.model.model.layers[3].mlp.down_proj.weight
    before = original.model.layers[3].mlp.down_proj.weight
    kept = weight != 0
    assert (not torch.equal(weight[kept], before[kept])) is updates_kept_weights
    assert perplexity(result.model, wikitext_ids) < magnitude_ppl / 3


@pytest.mark.parametrize("recipe", [f"wanda:n=2:m=4:{SHAPE_CALIBRATION}",
                                    f"sparsegpt:n=2:m=4:{SHAPE_CALIBRATION}",
                                    f"wanda:n=4:m=8:{SHAPE_CALIBRATION}", "magnitude:n=2:m=4"])
@pytest.mark.heavy
def test_nm_masks_hold_n_zeros_in_every_group_of_m(recipe, context, fresh_model):
    step = parse_recipe(recipe).steps[0]
    n, m = step.config.n, step.config.m
    model = compress(fresh_model(), parse_recipe(recipe), context).model
    for name, module in linear_layers(model).items():
        weight = module.weight.detach()
        assert follows_nm(weight, n, m), name
        groups = (weight.reshape(weight.shape[0], -1, m) == 0).sum(dim=2)
        # exactly n, except where the source checkpoint (Q4_1) already held an exact zero
        assert float((groups == n).float().mean()) > 0.995, name


@pytest.mark.heavy
def test_wanda_is_deterministic(context, fresh_model):
    recipe = parse_recipe(f"wanda:0.5:{SHAPE_CALIBRATION}")
    first = compress(fresh_model(), recipe, context).model
    second = compress(fresh_model(), recipe, context).model
    for (name, a), b in zip(linear_layers(first).items(), linear_layers(second).values(), strict=True):
        assert torch.equal(a.weight == 0, b.weight == 0), name


@pytest.mark.slow
def test_sparsegpt_at_or_below_wanda_with_the_default_calibration(context, fresh_model, perplexity,
                                                                  gptq_chunks):
    """The papers' ordering at 50% and 2:4, with 32 x 512 calibration tokens, on 4 x 2048 test tokens."""
    for shape in ("0.5", "n=2:m=4"):
        wanda = perplexity(compress(fresh_model(), parse_recipe(f"wanda:{shape}"), context).model,
                           gptq_chunks)
        sparsegpt = perplexity(compress(fresh_model(), parse_recipe(f"sparsegpt:{shape}"),
                                        context).model, gptq_chunks)
        assert sparsegpt <= wanda, shape


@pytest.mark.parametrize("recipe, message", [
    ("wanda:1.0", r"sparsity must be in \[0, 1\)"),
    ("sparsegpt:-0.1", r"sparsity must be in \[0, 1\)"),
    ("wanda:n=4:m=4", "N:M needs 0 < n < m"),
    ("sparsegpt:n=2", "give both n and m"),
    ("wanda:0.3:n=2:m=4", "an 2:4 pattern has sparsity 0.5"),
])
def test_bad_pruning_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)
