"""Speed of one model, measured as llama.cpp's `llama-bench` and optimum-benchmark do: batch-1
greedy decode tokens/s, time to first token per prompt length, prefill tokens/s, batched
generation throughput; beside them the weight bytes one decoded token reads, the kernels its
linear layers run, and this machine's memory bandwidth, which bounds batch-1 decoding.

A `Subject` is anything that generates from token ids (a Hugging Face model here, llama.cpp in
`speed_llamacpp.py`), so both are timed by the same code in the same run.
"""

from __future__ import annotations

import inspect
import time
import types
from dataclasses import dataclass
from typing import Protocol

import psutil
import torch
from torch import nn

from compbench.core.measure import PeakMemory, state_bytes
from compbench.evaluation.generation import FirstTokenClock


@dataclass(frozen=True)
class SpeedSettings:
    """What one speed run measures (every field is part of the run's identity)."""

    new_tokens: int = 128  # tokens decoded at batch 1 (and by each row at batch `batch_rows`)
    prompt_lengths: tuple[int, ...] = (128, 512, 2048)  # prompts timed to their first token
    batch_rows: int = 8  # rows of the batched generation
    repetitions: int = 3  # interleaved across the subjects; the table gives median and range
    threads: int = 0  # torch / llama.cpp threads (0: torch's default here, recorded as used)

    @property
    def decode_prompt(self) -> int:
        """The prompt decoding starts from: the shortest timed one."""
        return min(self.prompt_lengths)

    @property
    def longest_prompt(self) -> int:
        return max(self.prompt_lengths)

    @property
    def context_needed(self) -> int:
        """Positions a subject must hold: the longest prompt plus the decoded tokens."""
        return max(self.longest_prompt + 1, self.decode_prompt + self.new_tokens)


class Subject(Protocol):
    """Something that generates greedily from token ids, timed from outside."""

    def first_token_seconds(self, ids: list[int]) -> float: ...

    def decode(self, ids: list[int], new_tokens: int) -> tuple[float, float]: ...

    def batch_seconds(self, rows: list[list[int]], new_tokens: int) -> float | None: ...


class ModelSubject:
    """A Hugging Face causal LM on its device, generating greedily with its KV cache."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.pad_token_id = model.config.eos_token_id if model.config.pad_token_id is None \
            else model.config.pad_token_id

    @torch.inference_mode()
    def _generate(self, rows: list[list[int]], new_tokens: int, clock: FirstTokenClock | None = None):
        ids = torch.tensor(rows, device=self.device)
        return self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, streamer=clock,
                                   pad_token_id=self.pad_token_id)

    def first_token_seconds(self, ids: list[int]) -> float:
        start = time.perf_counter()
        self._generate([ids], 1)
        return time.perf_counter() - start

    def decode(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        """Seconds to the first new token, and from it to the last."""
        clock = FirstTokenClock()
        self._generate([ids], new_tokens, clock)
        return clock.first_token - clock.started, clock.ended - clock.first_token

    def batch_seconds(self, rows: list[list[int]], new_tokens: int) -> float | None:
        start = time.perf_counter()
        self._generate(rows, new_tokens)
        return time.perf_counter() - start


class CompiledSubject(ModelSubject):
    """The same model decoding through `torch.compile`d one-token steps (the overhead lever:
    batch-1 decoding of a small model is bound by per-operation overhead more than by memory).
    The KV cache is static, one per batch size and length, sized to the call and reused (reset):
    each shape compiles once, and attention reads only the positions the call holds (a cache
    sized for the longest prompt made every decode step read all of it). The prompt is
    prefilled eagerly, as Hugging Face's `generate` does with a compiled forward; greedy steps
    give `generate`'s tokens (tested)."""

    compiles = True  # its first call of each shape compiles: warm it up on the measured shapes

    def __init__(self, model: nn.Module):
        super().__init__(model)
        # before each step dynamo checks every module and parameter the graph was traced from
        # (2.3-2.6 ms of a 15-28 ms token, profiled); these steps never change the model, so those
        # guards are dropped, and the graphs are kept on a code object of this model's own, which
        # no other model's call can reach (dynamo keeps graphs per code object)
        self.step = torch.compile(_own_code(model.forward), dynamic=False, options={
            "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})
        self.caches: dict[tuple[int, int], object] = {}
        # the prefill's head on its last position only, as `generate` asks (on every position a
        # 151,936-token head over a 128-token prompt doubled the int8 kernel's time per token)
        accepts = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.last_logits = {"logits_to_keep": 1} if accepts else {}

    def _cache(self, rows: int, length: int):
        from transformers import StaticCache

        cache = self.caches.get((rows, length))
        if cache is None:
            cache = self.caches[rows, length] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache

    # a graph per cache shape: past torch's default limit of 8 a function (more prompt lengths)
    # the steps would fall back to eager without a word; raised only while these steps run
    @torch._dynamo.config.patch(recompile_limit=64)
    @torch.inference_mode()
    def _generate(self, rows: list[list[int]], new_tokens: int, clock: FirstTokenClock | None = None):
        ids = torch.tensor(rows, device=self.device)
        cache = self._cache(len(rows), ids.shape[1] + new_tokens)
        if clock is not None:
            clock.put(ids)
        logits = self.model(ids, past_key_values=cache, use_cache=True, **self.last_logits).logits
        tokens = [logits[:, -1:].argmax(-1)]
        if clock is not None:
            clock.put(tokens[0])
        for _ in range(new_tokens - 1):
            logits = self.step(tokens[-1], past_key_values=cache, use_cache=True).logits
            tokens.append(logits[:, -1:].argmax(-1))
        if clock is not None:
            clock.end()
        return torch.cat([ids, *tokens], dim=1)


def _own_code(method: types.MethodType) -> types.MethodType:
    """`method` over a copy of its function's code object, bound to the same instance."""
    function = method.__func__
    copy = types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return types.MethodType(copy, method.__self__)


def measure_once(subject: Subject, prompts: dict[int, list[int]], batch: list[list[int]],
                 settings: SpeedSettings) -> dict:
    """One repetition of every figure for one subject (`prompts`: token ids per prompt length)."""
    rss_before = psutil.Process().memory_info().rss
    with PeakMemory() as memory:
        first_token_s = {str(length): subject.first_token_seconds(prompts[length])
                         for length in settings.prompt_lengths}
        _, decode_s = subject.decode(prompts[settings.decode_prompt], settings.new_tokens)
        batch_s = subject.batch_seconds(batch, settings.new_tokens)
    longest = settings.longest_prompt
    return {
        "decode_tokens_per_s": (settings.new_tokens - 1) / decode_s,
        "time_to_first_token_s": first_token_s,
        "prefill_tokens_per_s": longest / first_token_s[str(longest)],
        "batch_tokens_per_s": len(batch) * settings.new_tokens / batch_s if batch_s else None,
        # what generating adds (KV cache, activations, workspaces): the process's peak RSS during
        # these measurements above its RSS before them (every subject lives in this process)
        "working_memory_mb": (memory.peak_rss_bytes - rss_before) / 2**20,
    }


def bytes_read_per_token(model: nn.Module) -> int:
    """Weight bytes one decoded token reads: every stored tensor once (packed weights and their
    scales as stored), except an untied input embedding, of which a token reads one row; a tied
    one is read whole, as the output head."""
    total = state_bytes(model)
    embedding = model.get_input_embeddings()
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() == embedding.weight.data_ptr():
        return total
    table = state_bytes(embedding)
    return total - table + table // embedding.weight.shape[0]


def read_bandwidth_gb_per_s(device: str = "cpu", size_mb: int = 512, passes: int = 5) -> float:
    """The memory read bandwidth in GB/s of the device the models run on: the best of `passes`
    reductions and copies of a buffer far larger than the caches (a copy reads and writes,
    counted as both), on torch's threads. The highest rate seen is the one that bounds decoding."""
    source = torch.ones(size_mb * 2**20 // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    nbytes = source.numel() * 4
    synchronize = torch.cuda.synchronize if source.is_cuda else (lambda: None)
    best = 0.0
    for _ in range(passes):
        for work, moved in ((lambda: torch.sum(source), nbytes), (lambda: target.copy_(source), 2 * nbytes)):
            synchronize()
            start = time.perf_counter()
            work()
            synchronize()
            best = max(best, moved / (time.perf_counter() - start))
    return best / 1e9
