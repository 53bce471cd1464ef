"""Measurement: true stored bytes of a model, parameter counts, peak memory, wall time, speed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil
import torch
from torch import nn

from compbench.core.tensors import dense_weight, is_quantized_linear, is_tensor_subclass


def state_bytes(module: nn.Module, float_bytes: int | None = None) -> int:
    """Bytes of every tensor in the module's state dict (packed weights and quantization state
    included), counting shared storage (tied embeddings) once. With `float_bytes`, floating
    tensors count that many bytes an element (2: the size of the model in fp16/bf16)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in _tensors(module.state_dict().values()):
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        element = float_bytes if float_bytes and tensor.is_floating_point() else tensor.element_size()
        total += tensor.numel() * element
    return total


def checkpoint_bytes(model: nn.Module) -> int:
    """Bytes on disk of the model's `save_pretrained` checkpoint (weights, config, quantization)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="compbench-size-") as folder:
        model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


@torch.no_grad()
def throughput(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int = 16) -> dict[str, float]:
    """Prefill tokens/s (one forward over the prompt) and generation tokens/s (greedy, KV cache:
    new tokens over the generate time minus the prefill time), best of two runs after a warm-up
    forward; None where the machine's noise leaves no measurable decode time."""
    device = next(model.parameters()).device
    prompt = prompt_ids.to(device)
    model(prompt[:, :8])
    prefill = []
    for _ in range(2):
        with Timer() as timer:
            model(prompt)
        prefill.append(timer.seconds)
    generate = []
    for _ in range(2):
        with Timer() as timer:
            out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=model.config.eos_token_id)
        generate.append(timer.seconds)
    produced = out.shape[1] - prompt.shape[1]
    decode_seconds = min(generate) - min(prefill)
    return {"prefill_tokens": prompt.shape[1], "prefill_tokens_per_s": prompt.numel() / min(prefill),
            "generate_tokens": produced,
            "generate_tokens_per_s": produced / decode_seconds if decode_seconds > 0 else None}


def _tensors(values):
    """Plain tensors in state-dict values: those packed in tuples (torch's quantized Linear) and
    the inner tensors of wrapper subclasses (torchao's quantized weights) included."""
    for value in values:
        if is_tensor_subclass(value):
            names, _ = value.__tensor_flatten__()
            yield from _tensors(getattr(value, name) for name in names)
        elif isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _tensors(value)


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) parameters of the original layer shapes: quantized Linear layers are
    dequantized to count their logical weights, not their packed bytes or scales."""
    total = nonzero = 0
    seen: set[int] = set()
    for module in model.modules():
        if is_quantized_linear(module):
            tensors = [dense_weight(module)]
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                tensors.append(bias.detach())
        else:
            tensors = []
            for param in module.parameters(recurse=False):
                if param.data_ptr() not in seen:
                    seen.add(param.data_ptr())
                    tensors.append(param.detach())
        for tensor in tensors:
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    return total, nonzero


@dataclass
class PeakMemory:
    """Context manager sampling this process's RSS (and CUDA peak) while the block runs."""

    interval_s: float = 0.05
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss_bytes = max(self.peak_rss_bytes, process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_rss_bytes = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_bytes = max(self.peak_rss_bytes, psutil.Process().memory_info().rss)
        if torch.cuda.is_available():
            self.peak_cuda_bytes = torch.cuda.max_memory_allocated()


class Timer:
    """Wall-clock seconds of a block (`with Timer() as t: ...; t.seconds`)."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


class TokenCounter:
    """Counts tokens fed to a model's forward (a pre-hook), for evaluation tokens/s."""

    def __init__(self, model: nn.Module):
        self.tokens = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(ids, torch.Tensor):
            self.tokens += ids.numel()

    def remove(self) -> None:
        self._handle.remove()
