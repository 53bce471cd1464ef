"""`compbench speed --compile`'s subject: a compiled one-token step over a static KV cache sized
to each call gives `generate`'s greedy tokens, on float and int4-kernel weights, and reuses one
cache (one graph) per shape."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from compbench.evaluation.speed import CompiledSubject, ModelSubject


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


@pytest.mark.heavy
@pytest.mark.parametrize("recipe", [None, "int4:32"])
def test_compiled_steps_decode_generates_greedy_tokens(recipe):
    model = _tiny_llama()
    if recipe:
        from compbench.compressors import compress, parse_recipe
        from compbench.compressors.registry import CompressionContext

        model = compress(model, parse_recipe(recipe), CompressionContext()).model
    rows = torch.randint(0, 512, (2, 12)).tolist()
    eager, compiled = ModelSubject(model), CompiledSubject(model)
    for batch in (rows[:1], rows):
        expected = eager._generate(batch, 6)
        assert torch.equal(compiled._generate(batch, 6), expected)
        assert torch.equal(compiled._generate(batch, 6), expected)  # the cache reset and reused
    assert set(compiled.caches) == {(1, 18), (2, 18)}
