"""OWL: the paper's rule for per-block sparsities, and OWL beating uniform Wanda at 70%."""

import pytest

from compbench.compressors import compress, parse_recipe
from compbench.compressors.owl import outlier_ratio, owl_sparsities
from compbench.compressors.targets import block_of, find_blocks, linear_layers, sparsity_of
from compbench.errors import CompbenchError


def test_more_outliers_means_less_pruning_and_the_mean_is_kept():
    chosen = owl_sparsities({"a": 0.01, "b": 0.03, "c": 0.02}, sparsity=0.7, lmbda=0.08)
    assert chosen["b"] < chosen["c"] < chosen["a"]
    assert sum(chosen.values()) / 3 == pytest.approx(0.7)
    assert chosen["a"] - chosen["b"] == pytest.approx(2 * 0.08)  # the ratios span [0, 2 lambda]


def test_equal_outlier_ratios_give_uniform_sparsity():
    assert owl_sparsities({"a": 0.02, "b": 0.02}, 0.6, 0.08) == {"a": 0.6, "b": 0.6}


def test_outlier_ratio_counts_scores_above_m_times_the_mean():
    import torch

    scores = torch.tensor([1.0] * 98 + [100.0, 100.0])  # mean 2.98: the two 100s are > 5 x mean
    assert outlier_ratio(scores, 5.0) == pytest.approx(0.02)


@pytest.mark.parametrize("recipe, message", [
    ("wanda:n=2:m=4:owl=true", "an N:M pattern has one fixed sparsity"),
    ("sparsegpt:0.9:owl=true:owl_lambda=0.1", r"owl_lambda must be in \(0, 0.05\]"),
    ("wanda:0.7:owl=true:owl_m=0", "owl_m must be > 0"),
    ("magnitude:0.7:owl=true", "'owl' is an option of sparsegpt, wanda"),
])
def test_bad_owl_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


def test_owl_keys_only_when_set():
    """Recipes written before OWL keep their identity (artifact keys, results)."""
    config = parse_recipe("wanda:0.5").steps[0].as_dict()["config"]
    assert "owl" not in config and "owl_m" not in config
    assert parse_recipe("wanda:0.5:owl=true").steps[0].as_dict()["config"]["owl"] is True


@pytest.mark.heavy
def test_owl_beats_uniform_wanda_at_70_percent(context, fresh_model, perplexity, gptq_chunks):
    """The OWL paper's headline setting; measured 680.6 vs 834.4 (2 x 2048 tokens, 16 x 512
    calibration tokens); here 8 x 512 calibration tokens and one 2048-token chunk."""
    calibration = "nsamples=8:seqlen=512"
    uniform = compress(fresh_model(), parse_recipe(f"wanda:0.7:{calibration}"), context)
    owl = compress(fresh_model(), parse_recipe(f"wanda:0.7:owl=true:{calibration}"), context)
    chosen = owl.steps[0]["stats"]["owl_block_sparsity"]
    assert len(chosen) == 30 and max(chosen.values()) - min(chosen.values()) > 0.1  # not uniform
    assert max(chosen.values()) - min(chosen.values()) == pytest.approx(2 * 0.08)  # span 2 lambda
    assert sum(chosen.values()) / len(chosen) == pytest.approx(0.7)
    layers = linear_layers(owl.model)
    blocks = find_blocks(owl.model)
    for block, target in chosen.items():  # each block pruned to the sparsity OWL chose for it
        achieved = sparsity_of({n: m for n, m in layers.items() if block_of(n, blocks) == block})
        assert achieved == pytest.approx(target, abs=0.005)
    assert owl.steps[0]["stats"]["sparsity"] == pytest.approx(0.7, abs=0.005)
    chunk = gptq_chunks[:1]
    assert perplexity(owl.model, chunk) < 0.95 * perplexity(uniform.model, chunk)
