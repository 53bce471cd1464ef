"""AWQ: the scale search on the paper's objective, scales that keep the function, packed
4-bit output, and AWQ beating round-to-nearest at the same group size."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.awq import AWQConfig, best_scales, fake_quantize, output_error, scale_
from compbench.compressors.registry import CompressionContext
from compbench.compressors.targets import linear_layers
from compbench.errors import CompbenchError


def test_fake_quantize_leaves_at_most_2_to_the_bits_levels_per_group():
    torch.manual_seed(0)
    weight = torch.randn(8, 128)
    quantized = fake_quantize(weight, bits=4, group_size=64, sym=False)
    for group in quantized.reshape(-1, 64):
        assert len(torch.unique(group)) <= 16
    assert (quantized - weight).abs().max() < (weight.max() - weight.min()) / 15


def test_the_search_never_scores_worse_than_round_to_nearest():
    """alpha = 0 is plain RTN, so the chosen scales' output error is at most RTN's; with one
    salient input channel it is much lower."""
    torch.manual_seed(0)
    weight = torch.randn(32, 128)
    x = torch.randn(512, 128)
    x[:, 3] *= 50  # an outlier channel, as LLM activations have
    gram, x_mean = x.T @ x, x.abs().mean(0)
    config = AWQConfig(group_size=64)
    scales, alpha = best_scales(weight, gram, x_mean, config)
    rtn = output_error(weight, fake_quantize(weight, 4, 64, False), gram)
    awq = output_error(weight, fake_quantize(weight * scales, 4, 64, False) / scales, gram)
    assert alpha > 0 and awq < 0.8 * rtn


def test_scaling_keeps_the_function():
    torch.manual_seed(0)
    norm = torch.nn.RMSNorm(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    before = layer(norm(x))
    scale_(norm, [layer], torch.rand(16) + 0.5)
    assert torch.allclose(layer(norm(x)), before, atol=1e-5)


def test_a_norm_that_does_not_scale_by_its_weight_is_refused():
    class OnePlusNorm(torch.nn.Module):  # Gemma's (1 + weight) RMSNorm
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(16))

        def forward(self, x):
            return x * (1 + self.weight)

    with pytest.raises(CompbenchError, match="OnePlusNorm does not scale its output by its weight"):
        scale_(OnePlusNorm(), [torch.nn.Linear(16, 8)], torch.rand(16) + 0.5)


@pytest.mark.parametrize("recipe, message", [
    ("awq:5", "bits must be one of 2, 3, 4, 8"),
    ("awq:4:n_grid=1", "n_grid must be >= 2"),
    ("awq:4:nsamples=0", "nsamples must be >= 1"),
])
def test_bad_awq_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


def test_awq_without_calibration_data_is_one_clear_error(fp32_model):
    with pytest.raises(CompbenchError, match="calibration needs the model's tokenizer"):
        compress(fp32_model, parse_recipe("awq:4"), CompressionContext())


@pytest.mark.heavy
def test_awq_beats_round_to_nearest_at_the_same_group_size(context, fresh_model, perplexity, gptq_chunks):
    """Group size 64, asymmetric both (the methods study, 4 x 2048 tokens and 16 x 512
    calibration tokens: 28.21 vs 31.75); here 8 x 512 and one chunk."""
    chunk = gptq_chunks[:1]
    rtn = perplexity(compress(fresh_model(), parse_recipe("rtn:4:sym=false"), context).model, chunk)
    result = compress(fresh_model(), parse_recipe("awq:4:nsamples=8:seqlen=512"), context)
    layers = linear_layers(result.model)
    assert len(layers) == 210 and all(hasattr(m, "weight_packed") for m in layers.values())
    stats = result.steps[0]["stats"]
    assert stats["scaled_mappings"] == 90  # q/k/v, gate/up and down in 30 blocks (v -> o: GQA widths)
    assert stats["clipped_layers"] == 150 and 0 < stats["mean_range_cut"] < 0.5  # all but q and k
    assert perplexity(result.model, chunk) < 0.97 * rtn


@pytest.mark.heavy
def test_awq_repacked_for_the_int4_kernel_scores_as_the_packed_model(context, fresh_model, wikitext_ids):
    """The same scales and integers in the CPU int4 kernel's layout (bfloat16 compute)."""
    from compbench.core.tensors import linear_kernels

    options = r"nsamples=2:seqlen=128:targets=layers\.[01]\."  # two blocks: the search is the cost
    packed = compress(fresh_model(), parse_recipe(f"awq:4:{options}"), context).model
    kernel = compress(fresh_model(), parse_recipe(f"awq:4:format=int4-cpu:{options}"), context).model
    assert linear_kernels(kernel)["int4 packed (aten._weight_int4pack_mm_for_cpu)"] == 14
    with torch.no_grad():
        losses = [float(m(wikitext_ids, labels=wikitext_ids).loss) for m in (packed, kernel)]
    assert abs(losses[0] - losses[1]) < 0.02  # bfloat16 activations in the kernel


def test_a_groups_clipping_error_is_its_own_output_error_and_never_above_no_clipping():
    """The Gram-block error of each (row, group) is sum over tokens of (x_g . e_g)^2, as AutoAWQ
    computes it from the inputs; the bounds chosen give each group at most the unclipped error,
    and cut the range where a group has an outlier weight."""
    from compbench.compressors.awq import best_clip, group_errors

    torch.manual_seed(0)
    weight, x = torch.randn(16, 128), torch.randn(256, 128)
    weight[0, 5] = 12.0  # one outlier stretches row 0's first group
    gram, config = x.T @ x, AWQConfig(group_size=64)
    unclipped = fake_quantize(weight, 4, 64, False) - weight
    direct = ((x.reshape(256, 1, 2, 64) * unclipped.reshape(1, 16, 2, 64)).sum(-1) ** 2).sum(0)
    assert torch.allclose(group_errors(unclipped, gram, 64), direct, rtol=1e-4)
    bounds = best_clip(weight, gram, config)
    groups = weight.reshape(16, 2, 64)
    clipped = torch.maximum(torch.minimum(groups, bounds), -bounds).reshape(16, 128)
    chosen = group_errors(fake_quantize(clipped, 4, 64, False) - weight, gram, 64)
    assert (chosen <= direct * (1 + 1e-5)).all()
    assert bounds[0, 0, 0] < 12.0 and chosen[0, 0] < 0.9 * direct[0, 0]
