"""One speed run: a preset's model built with each recipe (and llama.cpp's files of it), all held
in this process, then timed in repetitions interleaved across them (the order rotated each
repetition), so that a machine's drift falls on every row alike.

The run's file (JSON) is written after every repetition of every subject, atomically: an
interrupted run resumes where it stopped, and the same command on a finished run reprints it.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import torch
from tqdm import tqdm

from compbench.core.environment import environment
from compbench.core.io import as_stored, write_json_atomic
from compbench.core.tensors import linear_kernels
from compbench.errors import CompbenchError
from compbench.evaluation import speed_llamacpp
from compbench.evaluation.speed import (
    CompiledSubject,
    ModelSubject,
    SpeedSettings,
    bytes_read_per_token,
    measure_once,
    read_bandwidth_gb_per_s,
)
from compbench.records.index import SPEED_SCHEMA

VERSION = 1
COMPILED = "compiled"  # the suffix of a recipe's compiled row
COMPILED_HOW = ("torch.compile (inductor) of the one-token steps, a static KV cache sized to each call, "
                "dynamo's guards on the model dropped")


def check_speed_input(preset, settings: SpeedSettings) -> None:
    """Bad input refused before any model is built: a model that does not generate, and prompts
    plus new tokens beyond the positions the model holds."""
    from transformers import AutoConfig

    from compbench.model_zoo.sources import resolve_source

    if preset.task_head != "causal-lm":
        raise CompbenchError(f"speed times text generation; {preset.name} has no language-model "
                             f"head ({preset.task_head}): choose a causal LM preset")
    config = AutoConfig.from_pretrained(resolve_source(preset), revision=preset.revision)
    context = getattr(config, "max_position_embeddings", None)
    if context is not None and settings.context_needed > context:
        raise CompbenchError(
            f"{preset.name} holds {context} positions; the longest prompt ({settings.longest_prompt}) "
            f"and decoding {settings.new_tokens} tokens after the {settings.decode_prompt}-token "
            f"prompt need {settings.context_needed}: lower --prompt-lengths or --new-tokens")


def prompt_ids(tokenizer, settings: SpeedSettings) -> tuple[dict[int, list[int]], list[list[int]]]:
    """Real text as token ids (WikiText-2 validation): a prompt of each length, and the batch's
    rows of the decode prompt's length, each a different window."""
    from compbench.tasks.calibration import wikitext_prompt_ids

    start, width = settings.longest_prompt, settings.decode_prompt
    ids = wikitext_prompt_ids(tokenizer, start + settings.batch_rows * width)
    prompts = {length: ids[:length] for length in settings.prompt_lengths}
    batch = [ids[start + row * width:start + (row + 1) * width] for row in range(settings.batch_rows)]
    return prompts, batch


def run_identity(model: str, recipes: list[str], settings: SpeedSettings, llama_cpp: bool,
                 compiled: bool = False) -> dict:
    """What makes two speed runs the same run (a stored one with another identity is not resumed);
    `compiled` only when set, so runs made before it keep theirs."""
    identity = {"model": model, "recipes": recipes, "settings": asdict(settings), "llama_cpp": llama_cpp,
                **({"compiled": True} if compiled else {})}
    return as_stored(identity)


def load_run(path: Path, identity: dict) -> dict | None:
    """The stored run at `path` when it is this run; a different one is refused, not overwritten."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompbenchError(f"{path} is not a speed run's file ({exc}): choose another --output") from None
    ours = isinstance(stored, dict) and stored.get("schema") == SPEED_SCHEMA
    if not ours or stored.get("identity") != identity:
        raise CompbenchError(f"{path} holds another speed run (other model, recipes or settings): "
                             "choose another --output, or pass --again to measure anew over it")
    return stored


def run_speed(preset, recipes: list, settings: SpeedSettings, path: Path, *, llama_cpp: bool = True,
              again: bool = False, device: str | None = None, store=None, compiled: bool = False) -> dict:
    """Build every subject, time them (resuming a stored run), and return the run's record. With
    `compiled`, each recipe's model is timed a second time, decoding through compiled steps."""
    from compbench.model_zoo.loading import choose_device

    device = choose_device(device)
    threads = settings.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    identity = run_identity(preset.name, [str(r) for r in recipes], settings, llama_cpp, compiled)
    run = None if again else load_run(path, identity)
    if run is None:
        print(f"speed: measuring the memory read bandwidth of {device} ({threads} threads)", flush=True)
        run = {"schema": SPEED_SCHEMA, "version": VERSION, "identity": identity, "model": preset.name,
               "settings": {**asdict(settings), "threads": threads}, "read_bandwidth_probes_gb_per_s": [],
               "subjects": {}, "repetitions": [], "llama_cpp": None, "env": environment(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _probe_bandwidth(run, device)
    done = {(r["subject"], r["repetition"]) for r in run["repetitions"]}
    wanted = settings.repetitions
    subjects: dict[str, Any] = {}
    tokenizer = None
    for recipe in recipes:
        names = [str(recipe)] + ([f"{recipe} {COMPILED}"] if compiled else [])
        missing = [name for name in names if not all((name, k) in done for k in range(wanted))]
        if not missing:
            continue
        subject, info, tokenizer = _compbench_subject(preset, recipe, device, store)
        for name in missing:
            compiles = name != str(recipe)
            subjects[name] = CompiledSubject(subject.model) if compiles else subject
            run["subjects"][name] = {**info, "compiled": COMPILED_HOW} if compiles else info
    if llama_cpp:
        _add_llama_cpp(run, subjects, preset, settings, threads, done)
    if not subjects:
        return run
    if tokenizer is None:
        from transformers import AutoTokenizer

        from compbench.model_zoo.sources import resolve_source

        tokenizer = AutoTokenizer.from_pretrained(resolve_source(preset))
    prompts, batch = prompt_ids(tokenizer, settings)
    for name, subject in subjects.items():  # warm-up: first calls allocate and pick kernels
        if getattr(subject, "compiles", False):  # and compile, on the shapes measured
            print(f"speed: compiling {name}'s decode steps (a graph per cache shape)", flush=True)
            measure_once(subject, prompts, batch, settings)
        else:
            subject.decode(prompts[settings.decode_prompt][:32], 4)
    order = list(subjects)
    todo = [(k, n) for k in range(wanted) for n in order[k % len(order):] + order[:k % len(order)]
            if (n, k) not in done]
    for index, (repetition, name) in enumerate(tqdm(todo, desc="speed", unit="measurement", file=sys.stdout)):
        figures = measure_once(subjects[name], prompts, batch, settings)
        run["repetitions"].append({"subject": name, "repetition": repetition, **figures})
        if index + 1 == len(todo) or todo[index + 1][0] != repetition:
            _probe_bandwidth(run, device)
        write_json_atomic(path, run)
    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(path, run)
    return run


def _probe_bandwidth(run: dict, device: str) -> None:
    """Probe the read bandwidth again (at the start, and after each repetition round) and keep
    the best rate seen as the run's: one probe on a shared machine can read a quarter low (36.6
    against 49.0 GB/s in two runs a quarter of an hour apart), which put llama.cpp's F16 row at
    131% of its "limit"."""
    probes = run.setdefault("read_bandwidth_probes_gb_per_s", [])
    probes.append(read_bandwidth_gb_per_s(device))
    run["read_bandwidth_gb_per_s"] = max(probes)


def _compbench_subject(preset, recipe, device: str, store) -> tuple[ModelSubject, dict, Any]:
    """A recipe's model built (from the store where it holds it), what the speed file records of
    it, and its tokenizer."""
    from compbench.artifacts.build import build
    from compbench.compressors.llmc import decompress_for_inference

    print(f"speed: building {preset.name} with {recipe}", flush=True)
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    artifact = build(preset, recipe, device=device, store=store)
    decompress_for_inference(artifact.model)  # as evaluation runs it: compressed-tensors has no CPU kernel
    gc.collect()
    info = {"kind": "compbench", "recipe": str(recipe), "origin": artifact.origin,
            "dtype": str(artifact.model.dtype).removeprefix("torch."), "device": artifact.device,
            "kernels": linear_kernels(artifact.model), "size_bytes": artifact.compression.size_bytes,
            "bytes_read_per_token": bytes_read_per_token(artifact.model),
            "model_rss_mb": (process.memory_info().rss - rss_before) / 2**20,
            "compress_seconds": artifact.compression.seconds}
    return ModelSubject(artifact.model), info, artifact.tokenizer


def _add_llama_cpp(run: dict, subjects: dict, preset, settings: SpeedSettings, threads: int,
                   done: set) -> None:
    """llama.cpp's subjects: the preset's own GGUF and llama.cpp's Q4_0 / Q8_0 / F16 of it; or,
    when they cannot be timed, the reason, kept in the run."""
    from compbench.model_zoo.sources import gguf_file

    source = gguf_file(preset)
    reason = speed_llamacpp.missing_reason() if source is not None else \
        f"{preset.name} does not come from a GGUF file that llama.cpp can load"
    if reason:
        run["llama_cpp"] = reason
        print(f"speed: no llama.cpp rows: {reason}", flush=True)
        return
    files = {f"llama.cpp {speed_llamacpp.file_type(source)} (source)": source}
    for ftype in speed_llamacpp.LLAMA_FTYPES:
        name = f"llama.cpp {ftype}"
        if not all((name, k) in done for k in range(settings.repetitions)):
            print(f"speed: llama.cpp {ftype} of {source.name}", flush=True)
            files[name] = speed_llamacpp.quantized_gguf(source, ftype, threads)
    for name, file in files.items():
        if all((name, k) in done for k in range(settings.repetitions)):
            continue
        rss_before = psutil.Process().memory_info().rss
        subjects[name] = speed_llamacpp.LlamaCppSubject(file, settings.context_needed + 8, threads)
        run["subjects"][name] = {
            "kind": "llama.cpp", "recipe": name, "file": file.name,
            "size_bytes": file.stat().st_size,
            "model_rss_mb": (psutil.Process().memory_info().rss - rss_before) / 2**20,
            "bytes_read_per_token": speed_llamacpp.gguf_bytes_read_per_token(file),
            "kernels": {"llama.cpp": 1}}
