"""Loading a preset's uncompressed model: the device (CUDA when present), the load dtype, and
`from_pretrained` with the auto class its head needs."""

from __future__ import annotations

from pathlib import Path

from compbench.errors import CompbenchError
from compbench.model_zoo.presets import Preset, check_checkpoint_folder, is_classifier_config
from compbench.model_zoo.sources import resolve_source


def device_kind(device: str) -> str:
    """`cpu` or `cuda` (the index dropped): what can change a number, not which card ran it."""
    return device.split(":")[0]


DEVICE_FORMS = "cpu, cuda or cuda:N"


def check_device(device: str | None) -> None:
    """A device compbench can run on, named as torch names it: cpu, cuda or cuda:N."""
    import re

    if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise CompbenchError(f"--device {device}: not a device compbench runs on; use {DEVICE_FORMS} "
                             "(or leave it out: CUDA when present, else the CPU)")


def choose_device(device: str | None = None) -> str:
    """The requested device, else CUDA when present (under a data-parallel launcher such as
    `accelerate launch` or torchrun, this process's own GPU, cuda:$LOCAL_RANK), else CPU."""
    import os

    import torch

    check_device(device)
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


def auto_class_for(folder: str | Path):
    """The transformers auto class that loads a saved folder: a sequence classifier when its
    config says so, else a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if is_classifier_config(check_checkpoint_folder(Path(folder))):
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
