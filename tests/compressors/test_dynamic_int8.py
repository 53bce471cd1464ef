"""torch dynamic int8 on the real model: int8 Linear modules, smaller state, near-same outputs."""

import torch

from compbench.compressors import compress, parse_recipe
from compbench.compressors.targets import linear_layers


def test_dynamic_int8_swaps_the_targets_and_stays_close(fp32_model, wikitext_ids):
    with torch.no_grad():
        reference = fp32_model(wikitext_ids, labels=wikitext_ids)
    result = compress(fp32_model, parse_recipe("dynamic-int8"))
    layers = linear_layers(result.model)
    assert len(layers) == 210
    assert all(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in layers.values())
    assert result.steps[0]["stats"]["quantized_layers"] == 210
    # the 106M linear weights go from 4 bytes to 1; the fp32 embedding stays
    saved = result.size_bytes_before - result.size_bytes
    assert 0.7 * 106_168_320 * 3 < saved < 1.05 * 106_168_320 * 3
    with torch.no_grad():
        out = result.model(wikitext_ids, labels=wikitext_ids)
    assert float(reference.loss) < float(out.loss) < float(reference.loss) + 1.5


def test_skipping_down_proj_keeps_the_model_close(fp32_model, wikitext_ids):
    """Per-tensor activation quantization hurts down_proj (SwiGLU outliers); the rest is benign."""
    with torch.no_grad():
        reference = float(fp32_model(wikitext_ids, labels=wikitext_ids).loss)
    result = compress(fp32_model, parse_recipe("dynamic-int8:ignore=down_proj"))
    layers = linear_layers(result.model)
    assert all(isinstance(m, torch.nn.Linear) == ("down_proj" in n) for n, m in layers.items())
    assert result.steps[0]["stats"]["quantized_layers"] == 180
    with torch.no_grad():
        loss = float(result.model(wikitext_ids, labels=wikitext_ids).loss)
    assert abs(loss - reference) < 0.3
