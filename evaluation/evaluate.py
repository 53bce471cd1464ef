"""Evaluate an artifact with lm-eval (a sequence classifier: with evaluation/classify.py):
`evaluate(artifact, settings) -> RunRecord`, with its size, speed and memory measured.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from compbench.artifacts.build import Artifact
from compbench.core.tensors import linear_kernels
from compbench.evaluation.kv_cache import kv_cache_record
from compbench.evaluation.settings import EvalSettings, run_key
from compbench.records.record import (
    SCHEMA_VERSION,
    RunRecord,
    TaskResult,
    Timing,
)

SPEED_PROMPT_TOKENS = 128


def _protocol(task: str, metadata: dict, lm) -> dict | None:
    """How a perplexity task counted (its YAML `protocol`), with the window this run used."""
    from compbench.model_zoo.tokenizers import expects_bos
    from compbench.tasks.chunked import DEFAULT_SEQLEN, capped_seqlen

    protocol = dict(metadata.get("protocol") or {})
    if not protocol:
        return None
    protocol["tokenizer"] = getattr(lm.tokenizer, "name_or_path", None)
    bos = expects_bos(lm.tokenizer)
    if protocol.get("kind") == "rolling":
        protocol.update(window_tokens=lm.max_length, stride_tokens=lm.max_length,
                        window_prefix_token_id=lm.prefix_token_id)
        protocol["bos"] = ("every window starts with BOS, then up to window_tokens - 1 text tokens "
                           "(the model's tokenizer adds BOS to every sequence)" if bos else
                           "the first window starts with the prefix token, later ones continue the text")
    elif protocol.get("kind") == "chunked":
        seqlen = capped_seqlen(int(metadata.get("seqlen", DEFAULT_SEQLEN)),
                               getattr(lm.model.config, "max_position_embeddings", None))
        protocol.update(seqlen=seqlen, stride_tokens=seqlen - 1 if bos else seqlen)
        if bos:
            protocol["bos"] = ("every chunk starts with BOS, then seqlen - 1 text tokens (the "
                               "model's tokenizer adds BOS to every sequence)")
    return protocol


def _speed_prompt(tokenizer):
    """A fixed 128-token prompt (repeated English text) for the prefill/generation speed check."""
    text = " ".join(["The history of the region is long and its people have many stories."] * 40)
    return tokenizer(text, return_tensors="pt").input_ids[:, :SPEED_PROMPT_TOKENS]


def _document_samples(settings: EvalSettings, manager) -> dict[str, list[int]]:
    """lm-eval's `samples` for per-task limits: the first N documents of each leaf task of a
    limited task or group, as `limit` would take them (lm-eval refuses `limit` and `samples`
    together, and `samples` needs each task's document count, so the limited ones are loaded
    here once to count them)."""
    from lm_eval.evaluator_utils import get_sample_size

    samples = {}
    for name, limit in settings.task_limits:
        for leaf, task in manager.load([name])["tasks"].items():
            count = min(get_sample_size(task, limit), len(task.eval_docs))
            samples[leaf] = list(range(count))
    return samples


def classifier_batch_size(model, batch_size: int | str, max_length: int) -> int:
    """The classifier's batch size: the one asked for, or for `auto` the most rows of
    `max_length` tokens that fit (on a GPU too: its outputs are a few logits a row)."""
    if batch_size != "auto":
        return int(batch_size)
    from compbench.evaluation.batch_size import cpu_batch_size

    return cpu_batch_size(model.config, max_length, model.dtype.itemsize, max_batch_size=64,
                          output_width=model.config.num_labels)


def evaluate(artifact: Artifact, settings: EvalSettings, *, manager=None, key: str | None = None,
             eval_fields: dict[str, Any] | None = None, started_at: float | None = None,
             load_seconds: float | None = None, load_peak_rss_bytes: int = 0,
             samples_dir: Path | None = None) -> RunRecord:
    """Evaluate the artifact on the settings' tasks with lm-eval and measure size and speed.
    `manager`: the plan's task manager for this model (else one is built); `key`,
    `eval_fields`: the plan's run key and key fields; `started_at`, `load_*`: when and at what
    cost the artifact was built, for the timing; `samples_dir`: where generative tasks' samples
    logs go (a folder beside the results file)."""
    import lm_eval

    from compbench.compressors.llmc import decompress_for_inference
    from compbench.core.environment import environment
    from compbench.core.measure import (
        PeakMemory,
        Timer,
        TokenCounter,
        checkpoint_bytes,
        throughput,
    )
    from compbench.evaluation.classify import is_classifier, score_classifier
    from compbench.evaluation.generation import generation_block
    from compbench.evaluation.lm_model import CompressedLM
    from compbench.evaluation.task_manager import task_manager
    from compbench.model_zoo.presets import preset_argument
    from compbench.tasks.catalog import is_generative

    started = started_at or time.time()
    disk_bytes = artifact.checkpoint_bytes
    if disk_bytes is None and not artifact.recipe.unexportable_steps():
        disk_bytes = checkpoint_bytes(artifact.model)  # saved as built: packed, before decompressing
    decompress_for_inference(artifact.model)  # packed compressed-tensors: the float model it holds
    classifier = is_classifier(artifact.model)
    if manager is None:
        manager = task_manager(settings.include_paths, settings.tasks, preset_argument(artifact.preset))
    if eval_fields is None:
        eval_fields = settings.key_fields(manager.task_index, artifact.device)
    generation = None
    if classifier:
        model, max_length = artifact.model, settings.max_length or artifact.preset.max_length
        batch_sizes = [classifier_batch_size(model, settings.batch_size, max_length)]
        with PeakMemory() as eval_memory, Timer() as eval_timer:
            scores = {name: score_classifier(model, artifact.tokenizer, name, limit=settings.limit_of(name),
                                             batch_size=batch_sizes[0], max_length=max_length)
                      for name in settings.tasks}
        tasks = {name: score.task for name, score in scores.items()}
        seconds = sum(score.seconds for score in scores.values())
        eval_tokens = sum(score.tokens for score in scores.values())
        speed = {"eval_samples_per_s": sum(s.samples for s in scores.values()) / seconds,
                 "latency_ms_per_batch": max(s.latency_ms_per_batch for s in scores.values())}
        device = str(next(model.parameters()).device)
    else:
        lm = CompressedLM(artifact=artifact, max_length=settings.max_length,
                          batch_size=settings.batch_size, kv_cache=settings.kv_cache)
        model, max_length, device = lm.model, lm.max_length, str(lm.device)
        counter = TokenCounter(model)
        generative = any(is_generative(name, manager.task_index) for name in settings.tasks)
        samples = _document_samples(settings, manager) if settings.task_limits else None
        with PeakMemory() as eval_memory, Timer() as eval_timer:
            output = lm_eval.simple_evaluate(
                model=lm, tasks=list(settings.tasks), limit=settings.limit, samples=samples,
                num_fewshot=settings.num_fewshot, task_manager=manager, log_samples=generative,
                bootstrap_iters=settings.bootstrap_iters,
                apply_chat_template=settings.apply_chat_template,
                fewshot_as_multiturn=settings.fewshot_as_multiturn,
                system_instruction=settings.system_instruction,
                gen_kwargs=dict(settings.gen_kwargs) or None)
        counter.remove()
        generation = generation_block(output, lm.generation_log, samples_dir)
        if generation is not None and settings.kv_cache:
            generation["kv_cache"] = kv_cache_record(model, lm.tokenizer, settings.kv_cache)
        batch_sizes = list(lm.batch_sizes_used) or [settings.batch_size]  # each choice, in order
        eval_tokens = counter.tokens
        speed = throughput(model, _speed_prompt(lm.tokenizer))
        configs = output.get("configs", {})
        tasks = {}
        for name, block in output["results"].items():
            metadata = (configs.get(name) or {}).get("metadata") or {}
            counts = output.get("n-samples", {}).get(name, {})
            tasks[name] = TaskResult.from_lm_eval(
                block, output.get("higher_is_better", {}).get(name, {}), metadata,
                version=output.get("versions", {}).get(name), n_original=counts.get("original"),
                n_effective=counts.get("effective"), protocol=_protocol(name, metadata, lm))
    peak_cuda = eval_memory.peak_cuda_bytes
    return RunRecord(
        status="ok",
        run_key=key or run_key(artifact.key, eval_fields),
        model=artifact.model_block(max_length=max_length, batch_sizes=batch_sizes, device=device,
                                   kernels=linear_kernels(artifact.model)),
        artifact=artifact.identity,
        settings=eval_fields,
        compression=artifact.compression_info(checkpoint_bytes=disk_bytes),
        tasks=tasks,
        timing=Timing(
            started_at=started, wall_seconds=time.time() - started,
            load_and_compress_seconds=load_seconds, eval_seconds=eval_timer.seconds,
            eval_tokens=eval_tokens,
            eval_tokens_per_s=eval_tokens / eval_timer.seconds if eval_timer.seconds else None,
            **speed,
            peak_rss_mb=max(load_peak_rss_bytes, eval_memory.peak_rss_bytes) / 2**20,
            peak_cuda_mb=None if peak_cuda is None else peak_cuda / 2**20),
        env=environment(),
        generation=generation,
        baseline_check=artifact.baseline_check and dataclasses.asdict(artifact.baseline_check),
        schema_version=SCHEMA_VERSION,
    )
