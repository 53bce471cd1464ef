"""Layer selection: blocks found from the module tree (decoder and encoder alike), and each
config's `targets` / `ignore` patterns."""

import pytest

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import find_blocks, linear_layers
from compbench.core.tensors import dense_weight
from compbench.errors import CompbenchError


def test_decoder_blocks_and_default_targets(fp32_model):
    blocks = find_blocks(fp32_model)
    assert list(blocks) == [f"model.layers.{i}" for i in range(30)]
    names = list(linear_layers(fp32_model))
    assert len(names) == 30 * 7 and "lm_head" not in names
    assert all(n.startswith("model.layers.") for n in names)


def test_encoder_blocks_are_found_the_same_way():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    model = BertForSequenceClassification(config)
    assert list(find_blocks(model)) == [f"bert.encoder.layer.{i}" for i in range(3)]
    names = linear_layers(model)
    assert len(names) == 3 * 6  # q, k, v, attention output, intermediate, output
    assert "classifier" not in names and "bert.pooler.dense" not in names


def test_ignore_keeps_layers_out_and_targets_widen_the_set(fp32_model):
    before = {name: dense_weight(m).clone() for name, m in linear_layers(fp32_model).items()}
    pruned = compress(fp32_model, parse_recipe("magnitude:0.5:scope=layer:ignore=self_attn")).model
    for name, module in linear_layers(pruned).items():
        weight = dense_weight(module)
        if "self_attn" in name:
            assert bool((weight == before[name]).all()), name  # left alone
        else:
            assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=1e-3), name
    head = parse_recipe("magnitude:0.5:scope=layer:targets=^lm_head$").steps[0].config
    assert list(linear_layers(pruned, head)) == ["lm_head"]


def test_targets_matching_nothing_is_one_clear_error(fp32_model):
    with pytest.raises(CompbenchError, match="magnitude: no linear layer matches targets='nothing_here'"):
        compress(fp32_model, parse_recipe("magnitude:0.5:targets=nothing_here"))
    with pytest.raises(CompbenchError, match="int8: targets must be a regular expression"):
        parse_recipe("int8:targets=(")
