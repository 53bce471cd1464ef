"""`compbench speed --compile`'s subject: a compiled one-token step over a static KV cache sized
to each call gives `generate`'s greedy tokens, on float and int4-kernel weights, reuses one
cache (one graph) per shape, and runs its own model's graph (it drops dynamo's module guards)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from compbench.evaluation.speed import CompiledSubject, ModelSubject


def _tiny_llama(**settings) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         **settings)
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


@pytest.mark.heavy
def test_two_models_of_one_class_each_run_their_own_graph():
    # the same class and shapes, one computing otherwise (dynamo's guards on the modules, which
    # would tell them apart, are dropped: each model's steps must keep graphs of their own)
    models = [_tiny_llama(), _tiny_llama(hidden_act="relu")]
    rows = torch.randint(0, 512, (1, 12)).tolist()
    expected = [ModelSubject(model)._generate(rows, 6) for model in models]
    assert not torch.equal(*expected)
    compiled = [CompiledSubject(model) for model in models]
    for _ in range(2):  # each model's call after the other's graph exists
        for subject, tokens in zip(compiled, expected, strict=True):
            assert torch.equal(subject._generate(rows, 6), tokens)
