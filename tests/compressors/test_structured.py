"""Structured pruning on the real model: really smaller, consistent config, reloads, still works."""

import math

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.errors import CompbenchError


def test_removing_a_quarter_of_mlp_channels_shrinks_and_reloads(fp32_model, context, wikitext_ids,
                                                                 tmp_path, data_dir):
    from transformers import AutoModelForCausalLM

    from compbench.core.measure import checkpoint_bytes

    with torch.no_grad():
        baseline = math.exp(float(fp32_model(wikitext_ids, labels=wikitext_ids).loss))
    dense_disk = checkpoint_bytes(fp32_model)
    result = compress(fp32_model, parse_recipe("structured:ffn=0.25:nsamples=4:seqlen=256"), context)
    model = result.model
    assert model.config.intermediate_size == 1152
    assert all(b.mlp.up_proj.out_features == 1152 and b.mlp.down_proj.in_features == 1152
               for b in model.model.layers)
    assert result.size_bytes < result.size_bytes_before
    with torch.no_grad():
        logits = model(wikitext_ids).logits
        pruned = math.exp(float(model(wikitext_ids, labels=wikitext_ids).loss))
    assert pruned < 2 * baseline  # activation-aware choice; a weight-norm choice gave ~1e5 here
    model.save_pretrained(tmp_path)
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) < 0.9 * dense_disk
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.intermediate_size == 1152
    with torch.no_grad():
        assert torch.allclose(reloaded(wikitext_ids).logits, logits, atol=1e-4)


def test_heads_are_removed_alike_in_every_key_value_group(fp32_model, context, wikitext_ids, data_dir):
    result = compress(fp32_model, parse_recipe("structured:heads=0.34:nsamples=2:seqlen=128"), context)
    model = result.model
    assert model.config.num_attention_heads == 6 and model.config.num_key_value_heads == 3
    assert all(b.self_attn.q_proj.out_features == 6 * 64 and b.self_attn.o_proj.in_features == 6 * 64
               for b in model.model.layers)
    with torch.no_grad():
        assert math.isfinite(float(model(wikitext_ids, labels=wikitext_ids).loss))


@pytest.mark.parametrize("recipe, message", [
    ("structured", "nothing to remove"),
    ("structured:ffn=1.0", r"ffn must be in \[0, 1\)"),
    ("structured:heads=-0.1", r"heads must be in \[0, 1\)"),
])
def test_bad_structured_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


def test_removing_every_head_is_refused(fp32_model, context, data_dir):
    with pytest.raises(CompbenchError, match="would remove every query head"):
        compress(fp32_model, parse_recipe("structured:heads=0.9:nsamples=1:seqlen=64"), context)
