"""LoRA on compressed bases: which layers carry the adapter, which bases cannot, and exact
gradients through bitsandbytes 4-bit layers after an evaluation."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.errors import CompbenchError
from compbench.stages.lora import LoraSettings, attach_lora, target_layers


def _batch(tokenizer):
    ids = tokenizer(["The capital of France is Paris, and the capital of Italy is Rome."],
                    return_tensors="pt").input_ids
    return {"input_ids": ids, "labels": ids}


def test_all_linear_is_every_block_linear_and_no_head(fp32_model):
    layers = target_layers(fp32_model, "all-linear")
    assert len(layers) == 30 * 7  # q k v o gate up down in each of the 30 blocks
    assert not any("lm_head" in name or "embed" in name for name in layers)
    named = target_layers(fp32_model, "q_proj,v_proj")
    assert len(named) == 60 and all(n.endswith(("q_proj", "v_proj")) for n in named)


def test_target_modules_the_model_lacks_are_listed_with_those_it_has(fp32_model):
    with pytest.raises(CompbenchError) as error:
        target_layers(fp32_model, "q_proj,query,dense")
    message = str(error.value)
    assert message.startswith("LoRA target module(s) query, dense not in the model")
    assert "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in message


@pytest.mark.parametrize("recipe, layer", [("dynamic-int8", "torch.ao.nn.quantized.dynamic.Linear"),
                                           ("rtn:4", "packed GPTQ/RTN \\(compressed-tensors\\)")])
def test_a_base_peft_cannot_train_is_refused(recipe, layer, fresh_model, context):
    model = compress(fresh_model(), parse_recipe(recipe), context).model
    with pytest.raises(CompbenchError, match=f"the base's {layer} layers .* cannot carry a LoRA "
                                             "adapter: peft trains float or bitsandbytes layers"):
        target_layers(model, "all-linear")


def _lora_grads(model, batch) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**batch).loss.backward()
    # a parameter the backward never reached has no gradient: zero
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for n, p in model.named_parameters() if p.requires_grad}


def _evaluate(model, batch) -> None:
    model.eval()
    with torch.no_grad():
        model(**batch)
    model.train()


def test_4bit_gradients_after_an_evaluation_equal_a_fresh_models(fresh_model, context, tokenizer):
    """The pitfall: on AVX512-BF16 CPUs the first no-grad forward repacks a Linear4bit, and its
    backward then gives the adapter zero gradients. attach_lora turns that path off."""
    batch = _batch(tokenizer)
    model = attach_lora(compress(fresh_model(), parse_recipe("nf4"), context).model,
                        LoraSettings(r=4, alpha=8, dropout=0.0), "CAUSAL_LM", seed=0)
    model.train()
    fresh = _lora_grads(model, batch)
    _evaluate(model, batch)
    after = _lora_grads(model, batch)
    # B starts at zero, so A's first gradients are zero; B's reach every layer through the base
    assert all(g.abs().sum() > 0 for n, g in fresh.items() if "lora_B" in n)
    for name, grad in fresh.items():
        torch.testing.assert_close(after[name], grad, rtol=0, atol=0, msg=name)


def test_without_the_fix_an_evaluation_zeroes_4bit_gradients(fresh_model, context, tokenizer):
    """What the test above guards against, shown on this CPU (needs AVX512-BF16)."""
    from peft import LoraConfig, get_peft_model

    from compbench.core.environment import _cpu_flags

    if "avx512_bf16" not in _cpu_flags():
        pytest.skip("the repacked bf16 path exists only on CPUs with AVX512-BF16")
    batch = _batch(tokenizer)
    base = compress(fresh_model(), parse_recipe("nf4"), context).model
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    model.train()
    fresh = _lora_grads(model, batch)
    _evaluate(model, batch)
    after = _lora_grads(model, batch)
    lora_b = [n for n in fresh if "lora_B" in n]
    assert all(fresh[n].abs().sum() > 0 for n in lora_b)
    assert any(after[n].abs().sum() == 0 for n in lora_b)  # below the last layer, nothing flows


@pytest.mark.parametrize("recipe", ["int8", "nf4"])
def test_a_quantized_base_with_lora_counts_its_weights_once(recipe, fresh_model, context):
    """peft's wrapper of a bitsandbytes layer carries its class name; counting it as a quantized
    layer counted each weight twice (nf4) or failed (int8)."""
    from compbench.core.measure import param_counts

    base = compress(fresh_model(), parse_recipe(recipe), context).model
    before, _ = param_counts(base)
    model = attach_lora(base, LoraSettings(r=4, alpha=8, dropout=0.0), "CAUSAL_LM", seed=0)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora > 0 and param_counts(model)[0] == before + lora
