"""GPTQ and RTN on the real embedded model: packed storage, true sizes, GPTQ beats RTN, reload."""

import pytest
import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import linear_layers
from compbench.core.tensors import dense_weight
from compbench.errors import CompbenchError

CALIBRATION = "nsamples=2:seqlen=128"  # the tests using it check structure, not quality


@pytest.fixture(scope="module")
def test_chunk(gptq_chunks):
    """The first 2048 tokens of the GPTQ protocol's test text."""
    return gptq_chunks[:1]


def test_rtn_4bit_packs_weights_to_under_0_3_of_fp16(fp32_model, context):
    result = compress(fp32_model, parse_recipe("rtn:4:group_size=64"), context)
    stats = result.steps[0]["stats"]
    layers = linear_layers(result.model)
    assert len(layers) == 210 and all(hasattr(m, "weight_packed") for m in layers.values())
    measured = sum(t.numel() * t.element_size() for m in layers.values()
                   for t in [*m.parameters(), *m.buffers()])
    assert stats["quantized_linear_bytes"] == measured
    assert measured <= 0.3 * stats["fp16_linear_bytes"]
    # every group of 64 inputs holds at most 2^4 distinct levels
    weight = dense_weight(layers["model.layers.0.mlp.down_proj"])
    groups = weight.reshape(weight.shape[0], -1, 64)
    assert max(len(torch.unique(g)) for g in groups[:16].reshape(-1, 64)) <= 16
    # llm-compressor's offload wrappers are gone: plain parameters, no forward of its offloading
    import compressed_tensors.offload.module as offload

    forwards = [getattr(m.forward, "__func__", m.forward) for m in result.model.modules()]
    assert all(type(m._parameters) is dict for m in result.model.modules())
    assert not any(f.__code__.co_filename == offload.__file__ for f in forwards)


@pytest.mark.heavy
def test_gptq_beats_round_to_nearest_at_3_bits(context, test_chunk, fresh_model, perplexity):
    rtn = perplexity(compress(fresh_model(), parse_recipe("rtn:3"), context).model, test_chunk)
    gptq = perplexity(compress(fresh_model(), parse_recipe("gptq:3:nsamples=16:seqlen=512"), context).model,
                      test_chunk)
    assert perplexity(fresh_model(), test_chunk) < gptq < 0.8 * rtn  # measured: 82 vs 153 on 2 x 2048


@pytest.mark.slow
def test_gptq_beats_round_to_nearest_with_the_default_calibration(context, fresh_model, perplexity,
                                                                  gptq_chunks):
    """The GPTQ study's claim on its protocol: 4 x 2048 test tokens, 32 x 512 calibration tokens."""
    ppl = {r: perplexity(compress(fresh_model(), parse_recipe(r), context).model, gptq_chunks)
           for r in ("fp32", "rtn:4", "gptq:4", "rtn:3", "gptq:3", "gptq:8")}
    assert ppl["fp32"] < ppl["gptq:4"] < ppl["rtn:4"]
    assert ppl["gptq:4"] < ppl["gptq:3"] < ppl["rtn:3"]
    assert abs(ppl["gptq:8"] / ppl["fp32"] - 1) < 0.01


def test_packed_checkpoint_reloads_and_decompresses_for_inference(context, test_chunk, tmp_path, fresh_model):
    from transformers import AutoModelForCausalLM

    from compbench.compressors.llmc import decompress_for_inference
    from compbench.core.measure import checkpoint_bytes
    from compbench.core.tensors import linear_kernels

    fp32_disk = checkpoint_bytes(fresh_model())
    model = compress(fresh_model(), parse_recipe("rtn:4"), context).model
    with torch.no_grad():
        logits = model(test_chunk[:, :256]).logits
    model.save_pretrained(tmp_path)
    disk = sum(f.stat().st_size for f in tmp_path.iterdir())
    assert disk < 0.35 * fp32_disk  # the tied fp32 embedding is most of what is left
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert linear_kernels(reloaded) == {"compressed-tensors (dequantized each call)": 210, "dense float32": 1}
    # decompressed before its first forward (as evaluation and `compbench speed` run it): a plain
    # float model, no forward of compressed-tensors' left on any module, the same logits
    assert decompress_for_inference(reloaded) and not decompress_for_inference(reloaded)
    assert linear_kernels(reloaded) == {"dense float32": 211}
    assert not any("forward" in vars(m) for m in reloaded.modules())
    assert not any("weight_" in name for name, _ in reloaded.named_parameters())
    with torch.no_grad():
        assert torch.allclose(reloaded(test_chunk[:, :256]).logits, logits, atol=1e-4)
    # the same in process: the logits of compressed-tensors' own first-forward decompression
    fresh = compress(fresh_model(), parse_recipe("rtn:4"), context).model
    assert decompress_for_inference(fresh)
    with torch.no_grad():
        assert torch.equal(fresh(test_chunk[:, :256]).logits, logits)


@pytest.mark.heavy
def test_pruned_zeros_stay_zero_through_gptq(context, fresh_model):
    result = compress(fresh_model(), parse_recipe(f"wanda:0.5:{CALIBRATION}+gptq:4:{CALIBRATION}"), context)
    wanda, gptq = (s["stats"] for s in result.steps)
    assert wanda["sparsity"] == pytest.approx(0.5, abs=0.001)
    assert gptq["sparsity"] >= wanda["sparsity"]  # no pruned weight filled back in
    zeros = sum(int((dense_weight(m) == 0).sum()) for m in linear_layers(result.model).values())
    total = sum(dense_weight(m).numel() for m in linear_layers(result.model).values())
    assert zeros / total >= 0.5


@pytest.mark.parametrize("recipe, message", [
    ("gptq:5", "bits must be one of 2, 3, 4, 8"),
    ("rtn:bits=16", "bits must be one of"),
    ("gptq:4:damp=0", "damp must be in"),
    ("rtn:4:act_order=true", "unknown option 'act_order'"),
    ("gptq:4+int8", "must be the last step"),
])
def test_bad_quantization_options_are_one_clear_error(recipe, message):
    with pytest.raises(CompbenchError, match=message):
        parse_recipe(recipe)


def test_group_size_must_divide_the_layer_widths(fp32_model, context):
    with pytest.raises(CompbenchError, match="group_size=128 does not divide the input width 576"):
        compress(fp32_model, parse_recipe("rtn:4:group_size=128"), context)
