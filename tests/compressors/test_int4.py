"""int4 in the CPU kernel's layout on the real embedded model: which layers the kernel runs,
how close its weights are, and GPTQ / RTN repacked into it without changing a number."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.int4 import KERNEL
from compbench.compressors.targets import linear_layers
from compbench.core.tensors import dense_weight, is_int4_kernel_linear
from compbench.errors import CompbenchError


def test_int4_puts_every_block_linear_on_the_kernel_within_half_a_step(fp32_model, wikitext_ids, context):
    original = {n: m.weight.detach().clone() for n, m in linear_layers(fp32_model).items()}
    with torch.no_grad():
        reference = fp32_model(wikitext_ids).logits
    result = compress(fp32_model, parse_recipe("int4:32"), context)
    layers = linear_layers(result.model)
    assert set(layers) == set(original) and all(is_int4_kernel_linear(m) for m in layers.values())
    assert not is_int4_kernel_linear(result.model.lm_head)  # the tied head stays in float
    stats = result.steps[0]["stats"]
    assert stats["kernel"] == KERNEL and stats["quantized_layers"] == len(original)
    assert stats["compute_dtype"] == "torch.bfloat16"  # the kernel's fast activations
    # 4 bits a weight plus a bf16 scale and zero per 32: 0.3125 of fp16
    assert stats["linear_bytes_vs_fp16"] == pytest.approx(0.3125)
    for name in ("model.layers.0.self_attn.k_proj", "model.layers.29.mlp.down_proj"):
        weight, groups = original[name], original[name].reshape(original[name].shape[0], -1, 32)
        step = (groups.amax(-1) - groups.amin(-1)) / 15  # 16 levels spanning each group
        error = (dense_weight(layers[name]) - weight).abs().reshape(groups.shape)
        # half a step, plus bfloat16's rounding of the weight, its scale and its zero
        bound = step.unsqueeze(-1) / 2 + 2 ** -7 * groups.abs().amax(-1, keepdim=True)
        assert bool((error <= bound).all()), name
    with torch.no_grad():
        logits = result.model(wikitext_ids).logits
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() > 0.7


@pytest.mark.parametrize("recipe", ["rtn:4:sym=false", "gptq:4:nsamples=2:seqlen=128"])
def test_gptq_and_rtn_repacked_into_the_kernel_compute_the_same_model(recipe, fp32_model, wikitext_ids,
                                                                      context):
    """The same integers, scales and zero points (scales and zeros in bfloat16, the kernel's
    fast dtype): weights equal to bfloat16's rounding, loss within 1%."""
    import copy

    packed = compress(copy.deepcopy(fp32_model), parse_recipe(recipe), context).model
    kernel = compress(fp32_model, parse_recipe(f"{recipe}:format=int4-cpu"), context).model
    packed_layers, kernel_layers = linear_layers(packed), linear_layers(kernel)
    assert all(hasattr(m, "weight_packed") for m in packed_layers.values())
    assert all(is_int4_kernel_linear(m) for m in kernel_layers.values())
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.17.mlp.up_proj"):
        expected = dense_weight(packed_layers[name])
        torch.testing.assert_close(dense_weight(kernel_layers[name]), expected, rtol=2 ** -7,
                                   atol=2 ** -7 * float(expected.abs().max()))
    with torch.no_grad():
        expected = packed(wikitext_ids, labels=wikitext_ids)
        actual = kernel(wikitext_ids, labels=wikitext_ids)
    assert float(actual.loss) == pytest.approx(float(expected.loss), rel=0.01)


def test_a_layer_the_kernel_cannot_hold_is_named_not_skipped(fp32_model, context):
    with pytest.raises(CompbenchError, match=r"int4: model\.layers\.0\.self_attn\.q_proj has 576 input "
                       r"columns, not a multiple of group_size=128, so the int4 kernel cannot hold it; "
                       r"group_size=64 fits every width"):
        compress(fp32_model, parse_recipe("int4:128"), context)


@pytest.mark.parametrize("recipe, message", [
    ("int4:48", "group_size must be one of 32, 64, 128"),
    ("gptq:3:format=int4-cpu", "format=int4-cpu holds 4-bit weights in groups of 32, 64, 128"),
    ("rtn:4:group_size=0:format=int4-cpu", "got bits=4, group_size=0"),
    ("gptq:4:act_order=true:format=int4-cpu", "act_order=true reorders them"),
    ("rtn:4:format=gguf", "format must be one of compressed-tensors, int4-cpu"),
])
def test_bad_int4_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


def test_the_kernel_format_is_keyed_and_unexportable_and_the_default_keeps_old_keys():
    step = parse_recipe("gptq:4:format=int4-cpu").steps[0]
    assert step.as_dict()["config"]["format"] == "int4-cpu"
    assert "format" not in parse_recipe("gptq:4").as_dict()["steps"][0]["config"]
    assert [str(s) for s in parse_recipe("rtn:4:format=int4-cpu").unexportable_steps()] == [
        "rtn:4:format=int4-cpu"]
    assert parse_recipe("int4").unexportable_steps() and not parse_recipe("rtn:4").unexportable_steps()
