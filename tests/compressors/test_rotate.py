"""Rotations: fused into the weights, the model's function kept; widths without a Hadamard refused."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.registry import CompressionContext
from compbench.errors import CompbenchError


def test_bad_rotations_are_one_clear_error():
    with pytest.raises(CompbenchError, match="rotations must be one of r1, r2, r1r2"):
        parse_recipe("rotate:r3")


def _tiny_llama(hidden: int, heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=hidden, num_attention_heads=heads,
                                        num_key_value_heads=heads, intermediate_size=64,
                                        num_hidden_layers=1, vocab_size=64))


def test_a_width_without_a_hadamard_matrix_is_refused():
    with pytest.raises(CompbenchError, match="hidden size 90 has no Hadamard matrix"):
        compress(_tiny_llama(90, 3), parse_recipe("rotate"), CompressionContext())
    with pytest.raises(CompbenchError, match="head size 30 has no Hadamard matrix"):
        compress(_tiny_llama(120, 4), parse_recipe("rotate:r2"), CompressionContext())


@pytest.mark.parametrize("rotations", ["r1", "r2", "r1r2"])
def test_rotations_are_fused_and_keep_the_function(rotations, fp32_model, wikitext_ids):
    layer = fp32_model.model.layers[0]
    embed_before = fp32_model.model.embed_tokens.weight.clone()
    v_before = layer.self_attn.v_proj.weight.clone()
    with torch.no_grad():
        before = torch.log_softmax(fp32_model(wikitext_ids).logits, -1)
    model = compress(fp32_model, parse_recipe(f"rotate:{rotations}"), CompressionContext()).model
    assert all(type(m) is torch.nn.Linear and not m._forward_pre_hooks and not m._forward_hooks
               for m in model.modules() if isinstance(m, torch.nn.Linear))  # nothing online
    layer = model.model.layers[0]
    # R1 rotates the residual stream, the embedding's rows among it; R2 only the heads' values.
    # Either way llm-compressor centres the embedding rows first.
    centred = embed_before - embed_before.mean(-1, keepdim=True)
    rotated = not torch.allclose(model.model.embed_tokens.weight, centred, atol=1e-5)
    assert rotated == ("r1" in rotations)
    assert torch.equal(layer.self_attn.v_proj.weight, v_before) is False
    with torch.no_grad():
        after = torch.log_softmax(model(wikitext_ids).logits, -1)
    # nearly the same next-token distributions: llm-compressor also centres the embedding rows
    # (QuaRot's step for LayerNorm models), which an RMSNorm model feels a little: measured mean
    # KL 0.0013 nats, perplexity +0.2%
    kl = (after.exp() * (after - before)).sum(-1)
    assert kl.mean() < 0.005
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() > 0.97
