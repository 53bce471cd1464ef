"""Every registered method, table-driven: parse -> apply on the real model -> score real text."""

import math

import pytest
import torch

from compbench.compressors import COMPRESSORS, compress, parse_recipe
from compbench.compressors.targets import linear_layers
from compbench.core.measure import param_counts

TINY = "nsamples=2:seqlen=128"  # calibration just large enough to exercise the real path
# mixed measures one sensitivity per block, awq searches scales per layer: their targets here
# are the first 4 blocks' linears
RECIPES = {
    "fp32": "fp32", "bf16": "bf16", "fp16": "fp16",
    "int8": "int8", "nf4": "nf4:double_quant=true", "fp4": "fp4",
    "rtn": "rtn:4", "gptq": f"gptq:4:{TINY}",
    "mixed": r"mixed:5:sensitivity_samples=1:seqlen=128:targets=layers\.[0-3]\.",
    "dynamic-int8": "dynamic-int8", "torchao-int8": "torchao-int8:activations=true", "int4": "int4:32",
    "int8wo": "int8wo",
    "magnitude": "magnitude:0.3", "wanda": f"wanda:0.3:{TINY}", "sparsegpt": f"sparsegpt:0.3:{TINY}",
    "structured": f"structured:ffn=0.1:{TINY}",
    "awq": rf"awq:4:{TINY}:targets=layers\.[0-3]\.", "hqq": "hqq:4", "rotate": "rotate",
    "smoothquant": f"smoothquant:0.5:{TINY}",
}


CAST_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def test_the_table_covers_every_registered_method():
    assert set(RECIPES) == set(COMPRESSORS)


def _weights_checksum(model) -> float:
    return float(sum(m.weight.double().abs().sum() for m in linear_layers(model).values()))


def _did_what_it_claims(method: str, model, result, nonzero_before: int, checksum_before: float) -> None:
    """A method is no no-op: a cast leaves every float weight in its dtype, a quantizer stores
    fewer bytes than the fp32 model, a pruner leaves fewer non-zero weights, a transform
    rewrites the weights."""
    kind = COMPRESSORS[method].kind
    if kind == "cast":
        dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
        assert dtypes == {CAST_DTYPES[method]}, (method, dtypes)
    elif kind == "quantize":
        assert result.size_bytes < 0.97 * result.size_bytes_before, (method, result.size_bytes)
    elif kind == "transform":  # weights rewritten, function kept (checked below)
        assert _weights_checksum(model) != pytest.approx(checksum_before, rel=1e-4), method
    else:
        nonzero = param_counts(model)[1]
        assert nonzero < 0.98 * nonzero_before, (method, nonzero, nonzero_before)


# calibrated, layer by layer: 10 to 30 s each here
HEAVY = ("awq", "gptq", "smoothquant", "sparsegpt", "wanda")


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.heavy) if m in HEAVY else m
                                    for m in sorted(RECIPES)])
def test_method_parses_applies_and_still_predicts_text(method, fp32_model, wikitext_ids, context):
    recipe = parse_recipe(RECIPES[method])
    assert str(parse_recipe(str(recipe))) == str(recipe)  # canonical form round-trips
    with torch.no_grad():
        baseline = float(fp32_model(wikitext_ids, labels=wikitext_ids).loss)
    nonzero_before = param_counts(fp32_model)[1]
    checksum_before = _weights_checksum(fp32_model)
    result = compress(fp32_model, recipe, context)
    model = result.model
    _did_what_it_claims(method, model, result, nonzero_before, checksum_before)
    assert linear_layers(model)  # the targets are still found after the step
    step = result.steps[0]
    assert step["method"] == method and step["seconds"] > 0 and step["peak_rss_mb"] > 100
    with torch.no_grad():
        loss = float(model(wikitext_ids.to(model.device), labels=wikitext_ids.to(model.device)).loss)
    assert math.isfinite(loss)
    # every method keeps a usable model at these mild settings: within 1 nat of the original
    assert loss < baseline + 1.0, (method, loss, baseline)
    if COMPRESSORS[method].kind == "transform":  # the same function, its weights rewritten
        assert abs(loss - baseline) < 0.02, (method, loss, baseline)
