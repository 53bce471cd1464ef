"""Structured pruning on the real model: really smaller, consistent config, reloads, still works."""

import math

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.errors import CompbenchError


@pytest.mark.heavy
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


@pytest.fixture(scope="module")
def encoder():
    """The embedded encoder with a fresh (seeded) 2-class head, and its calibration context."""
    from compbench.artifacts.build import compression_context
    from compbench.model_zoo.loading import load_model
    from compbench.model_zoo.presets import get_preset

    def make():
        torch.manual_seed(0)
        model, tokenizer = load_model(get_preset("minilm-l6-v2"), device="cpu", num_labels=2)
        return model, tokenizer, compression_context(tokenizer)
    return make


def test_an_encoder_loses_30_percent_of_its_ffn_channels_and_reloads(encoder, tmp_path, data_dir):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer, context = encoder()
    before = sum(p.numel() for p in model.parameters())
    result = compress(model, parse_recipe("structured:ffn=0.3:nsamples=2:seqlen=128"), context)
    removed = round(0.3 * 1536)  # 461 channels in each of the 6 layers
    # each channel: a row of intermediate.dense (384 weights + a bias) and a column of output.dense
    assert sum(p.numel() for p in result.model.parameters()) == before - 6 * removed * (384 + 1 + 384)
    assert result.model.config.intermediate_size == 1536 - removed
    batch = tokenizer(["a gripping, funny film", "dull and far too long"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        logits = result.model(**batch).logits
    result.model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits, rtol=0, atol=1e-5)


def test_an_encoder_loses_a_quarter_of_its_heads_and_reloads_with_compbench(encoder, tmp_path,
                                                                            data_dir):
    from transformers import AutoModelForSequenceClassification

    from compbench.model_zoo.loading import load_model
    from compbench.model_zoo.presets import get_preset

    model, tokenizer, context = encoder()
    before = sum(p.numel() for p in model.parameters())
    result = compress(model, parse_recipe("structured:heads=0.25:nsamples=2:seqlen=128"), context)
    # 3 of 12 heads (32 dims each) per layer: query/key/value rows (+ biases), output.dense columns
    assert sum(p.numel() for p in result.model.parameters()) == before - 6 * (3 * (96 * 384 + 96) + 384 * 96)
    pruned = result.model.config.pruned_heads
    assert sorted(pruned) == [str(i) for i in range(6)] and all(len(set(h)) == 3 for h in pruned.values())
    assert result.model.config.num_attention_heads == 12  # the head size stays hidden / 12
    batch = tokenizer(["a gripping, funny film", "dull and far too long"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        logits = result.model(**batch).logits
    result.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded, _ = load_model(get_preset(str(tmp_path)), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="mismatch"):  # why compbench has its own loader
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    narrower = compress(reloaded, parse_recipe("structured:ffn=0.3:nsamples=2:seqlen=128"), context)
    stats = narrower.steps[0]["stats"]
    assert (stats["heads_before"], stats["heads_after"]) == (9, 9)  # FFN pruning keeps the heads
    with pytest.raises(CompbenchError, match="already had heads removed"):
        compress(narrower.model, parse_recipe("structured:heads=0.25:nsamples=1:seqlen=64"), context)


def test_removing_every_head_of_an_encoder_is_refused(encoder, data_dir):
    model, _, context = encoder()
    with pytest.raises(CompbenchError, match="heads=0.96 would remove every query head"):
        compress(model, parse_recipe("structured:heads=0.96:nsamples=1:seqlen=64"), context)
