"""int8wo on the real embedded model: every block linear on the int8 kernel, its weights within
half a step of the originals, its output the dequantized matmul's, its loss bf16's within 1%."""

import copy

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.cpu_kernels import INT8_KERNEL as KERNEL
from compbench.compressors.cpu_kernels import Int8PackedLinear
from compbench.compressors.targets import linear_layers
from compbench.core.tensors import dense_weight, is_quantized_linear


def test_int8wo_puts_every_block_linear_on_the_int8_kernel_within_half_a_step(fp32_model, wikitext_ids,
                                                                             context):
    original = {n: m.weight.detach().clone() for n, m in linear_layers(fp32_model).items()}
    bf16 = copy.deepcopy(fp32_model).to(torch.bfloat16)
    result = compress(fp32_model, parse_recipe("int8wo"), context)
    layers = linear_layers(result.model)
    assert set(layers) == set(original)
    assert all(type(m) is Int8PackedLinear and m.weight.dtype == torch.int8 for m in layers.values())
    assert all(is_quantized_linear(m) for m in layers.values())
    assert not isinstance(result.model.lm_head, Int8PackedLinear)  # the tied head stays in float
    stats = result.steps[0]["stats"]
    assert stats["kernel"] == KERNEL and stats["quantized_layers"] == len(original)
    # one byte a weight plus a bf16 scale a row
    assert stats["linear_bytes_vs_fp16"] == pytest.approx(0.5, abs=0.01)
    for name in ("model.layers.0.self_attn.k_proj", "model.layers.29.mlp.down_proj"):
        weight = original[name]
        step = weight.abs().amax(1, keepdim=True) / 127  # symmetric, 255 levels a row
        error = (dense_weight(layers[name]) - weight).abs()
        assert bool((error <= step / 2 + 2 ** -8 * weight.abs().amax(1, keepdim=True)).all()), name
        # the kernel computes the dequantized matmul (bf16 activations and accumulation)
        module = layers[name]
        x = torch.randn(3, module.in_features, dtype=torch.bfloat16)
        expected = x.float() @ dense_weight(module).T
        torch.testing.assert_close(module(x).float(), expected, rtol=2 ** -6,
                                   atol=2 ** -6 * float(expected.abs().max()))
    with torch.no_grad():
        loss_bf16 = float(bf16(wikitext_ids, labels=wikitext_ids).loss)
        loss_int8 = float(result.model(wikitext_ids, labels=wikitext_ids).loss)
    assert loss_int8 == pytest.approx(loss_bf16, rel=0.01)


def test_int8wo_is_not_storable_or_trainable():  # its export writes torchao-int8 (below)
    from compbench.artifacts.store import storable

    recipe = parse_recipe("int8wo")
    assert recipe.unexportable_steps() and not storable(recipe)


@pytest.mark.parametrize("recipe, instead", [("int8wo", "for int8 weights on a GPU use int8 or "
                                              "torchao-int8"),
                                             ("int4:32", "for 4-bit on a GPU use rtn:4, gptq:4 or nf4")])
def test_a_cpu_kernel_off_the_cpu_is_refused_with_what_to_use_instead(recipe, instead):
    """A model on another device (here the meta device, as no GPU is at hand) is refused before
    anything is changed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from compbench.compressors.registry import CompressionContext
    from compbench.errors import CompbenchError

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=32)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    with pytest.raises(CompbenchError, match=rf"{recipe.split(':')[0]} runs the CPU kernel aten\._weight_"
                                             rf".*; the model is on meta: {instead}$"):
        compress(model, parse_recipe(recipe), CompressionContext())


@pytest.mark.parametrize("recipe", ["int8wo:head=true", "int4:64:head=true"])
def test_head_true_puts_the_untied_head_on_the_int8_kernel_and_leaves_the_embedding_float(
        recipe, fp32_model, wikitext_ids, context):
    """The head, read whole every token, goes on the int8 kernel (int4 heads cost 2.8% of the
    loss here, int8 ones under 1%); the tied embedding keeps its own float weight (bf16 of the
    original) and the loss stays within 2% of the same recipe without."""
    embedding = fp32_model.get_input_embeddings().weight.detach().clone()
    without = compress(copy.deepcopy(fp32_model), parse_recipe(recipe.replace(":head=true", "")), context)
    result = compress(fp32_model, parse_recipe(recipe), context)
    model = result.model
    head = model.get_output_embeddings()
    assert type(head) is Int8PackedLinear
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.get_input_embeddings().weight, embedding.to(torch.bfloat16))
    assert result.steps[0]["stats"]["head_kernel"] == "aten._weight_int8pack_mm"
    with torch.no_grad():
        loss = float(model(wikitext_ids, labels=wikitext_ids).loss)
        loss_without = float(without.model(wikitext_ids, labels=wikitext_ids).loss)
    assert loss == pytest.approx(loss_without, rel=0.02)
    assert result.size_bytes > without.size_bytes  # the embedding and the packed head both stored
    assert "head" not in parse_recipe("int4").as_dict()["steps"][0]["config"]  # old keys kept


@pytest.mark.heavy
def test_exported_int8wo_reloads_with_stock_transformers_and_back_onto_the_kernel(
        fp32_model, wikitext_ids, context, tmp_path):
    """`compbench export --recipe int8wo` writes torchao-int8's checkpoint (the kernel's layout
    does not save): stock `from_pretrained` reloads int8wo's own integers and scales as torchao
    Int8Tensors, scoring as the kernel does, and int8wo over the reloaded model puts those same
    integers back on the kernel."""
    from transformers import AutoModelForCausalLM

    from compbench.cli.main import main

    kernel = compress(copy.deepcopy(fp32_model), parse_recipe("int8wo"), context).model
    out = tmp_path / "int8wo"
    assert main(["export", "--recipe", "int8wo", "--device", "cpu", str(out)]) == 0
    stock = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")
    kernel_layers, stock_layers = linear_layers(kernel), linear_layers(stock)
    assert set(stock_layers) == set(kernel_layers)
    for name, module in stock_layers.items():
        assert type(module.weight).__name__ == "Int8Tensor", name
        assert torch.equal(module.weight.qdata, kernel_layers[name].weight), name
        # int8wo keeps torchao's float32 scales in bfloat16, the kernel's activation dtype
        assert torch.equal(module.weight.scale.reshape(-1).to(torch.bfloat16),
                           kernel_layers[name].weight_scale), name
    with torch.no_grad():
        loss_stock = float(stock(wikitext_ids, labels=wikitext_ids).loss)
        loss_kernel = float(kernel(wikitext_ids, labels=wikitext_ids).loss)
    assert loss_stock == pytest.approx(loss_kernel, rel=0.01)
    back = compress(stock, parse_recipe("int8wo"), context).model
    for name, module in linear_layers(back).items():
        assert type(module) is Int8PackedLinear, name
        assert torch.equal(module.weight, kernel_layers[name].weight), name
        assert torch.equal(module.weight_scale, kernel_layers[name].weight_scale), name
