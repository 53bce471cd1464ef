"""Evaluate an artifact with lm-eval (a sequence classifier: with harness/classify.py):
`evaluate(artifact, settings) -> RunRecord`.

`EvalSettings` are the evaluation choices that can change a number; with the artifact's
identity they make the run key, so a results file is reused only for the very same run.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.core.io import digest_of
from compbench.harness.artifact import Artifact
from compbench.reports.record import (
    SCHEMA_VERSION,
    CompressionInfo,
    RunRecord,
    TaskResult,
    Timing,
)

SPEED_PROMPT_TOKENS = 128


@dataclass(frozen=True)
class EvalSettings:
    """How a run evaluates: tasks, document limit, few-shot, batch size, window, device."""

    tasks: tuple[str, ...]
    limit: int | float | None = None  # documents per task (a fraction when < 1); None: all
    num_fewshot: int | None = None  # None: each task's own
    batch_size: int | str = 1  # or "auto": the most rows that fit (see harness/batch_size.py)
    max_length: int | None = None  # evaluation window in tokens; None: the preset's
    bootstrap_iters: int = 1000  # draws for the stderr of metrics lm-eval bootstraps
    include_paths: tuple[str, ...] = ()  # folders of the user's own task YAMLs, beside compbench's

    def key_fields(self, task_index: dict, device: str) -> dict[str, Any]:
        """What can change a number: these settings, each task's YAML (version, or its content
        for a user's task) and data files' sha256, the device kind and the lm-eval version.
        Where the user's task folders are is not part of it: their content is."""
        import lm_eval

        from compbench.model_zoo.presets import device_kind
        from compbench.tasks.catalog import task_fingerprint

        tasks = {}
        for name in self.tasks:
            tasks.update(task_fingerprint(name, task_index))
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "include_paths"}
        return {**fields, "tasks": list(self.tasks), "task_fingerprints": tasks,
                "device_kind": device_kind(device), "lm_eval": lm_eval.__version__}


def run_key(artifact_key: str, eval_fields: dict[str, Any]) -> str:
    """The digest naming one run: the artifact's identity plus the evaluation's key fields."""
    return digest_of({"artifact": artifact_key, "eval": eval_fields})


def task_manager(metadata: dict | None = None, include_paths: tuple[str, ...] = (),
                 tasks: tuple[str, ...] = ()):
    """lm-eval's task manager with compbench's tasks and the user's task folders included
    (lm-eval's `include_path`; a user's task of the same name overrides compbench's). When every
    one of `tasks` is compbench's or the user's, lm-eval's own ~15,000 task YAMLs are left
    unindexed: that saves about 6 s per run here."""
    from lm_eval.tasks import TaskManager

    from compbench.tasks import TASKS_DIR

    folders = [str(TASKS_DIR), *include_paths]
    if tasks:
        local = TaskManager(include_path=folders, include_defaults=False, metadata=metadata)
        if all(task in local.task_index for task in tasks):
            return local
    return TaskManager(include_path=folders, metadata=metadata)


def check_include_paths(include_paths: tuple[str, ...]) -> tuple[str, ...]:
    """The user's task folders, absolute; a missing one is an error naming it."""
    from compbench.errors import CompbenchError

    resolved = []
    for path in include_paths:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise CompbenchError(f"task folder {path} (--include-path) does not exist; it should "
                                 "hold lm-eval task YAML files")
        resolved.append(str(folder.resolve()))
    return tuple(resolved)


@functools.cache
def task_index(include_paths: tuple[str, ...] = (), tasks: tuple[str, ...] = ()) -> dict:
    """lm-eval's index of task names (built once per process); of compbench's and the user's
    tasks alone when it holds all of `tasks` (see `task_manager`)."""
    return task_manager(include_paths=include_paths, tasks=tasks).task_index


def _git_hash() -> str | None:
    """The checkout's commit, when compbench runs from a git checkout (else None, silently)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=root, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_flags() -> list[str]:
    """The CPU features that change low-precision numerics (bf16 and AMX kernels)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile",
                                            "avx512f", "avx2"))


def environment() -> dict[str, Any]:
    import torch

    import compbench

    return {
        "git_hash": _git_hash(),
        "versions": {"compbench": compbench.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_flags": _cpu_flags(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch_threads": torch.get_num_threads()},
    }


def _protocol(task: str, metadata: dict, lm) -> dict | None:
    """How a perplexity task counted (its YAML `protocol`), with the window this run used."""
    from compbench.model_zoo.presets import expects_bos
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


def classifier_batch_size(model, batch_size: int | str, max_length: int) -> int:
    """The classifier's batch size: the one asked for, or for `auto` the most rows of
    `max_length` tokens that fit (on a GPU too: its outputs are a few logits a row)."""
    if batch_size != "auto":
        return int(batch_size)
    from compbench.harness.batch_size import cpu_batch_size

    return cpu_batch_size(model.config, max_length, model.dtype.itemsize, max_batch_size=64,
                          output_width=model.config.num_labels)


def evaluate(artifact: Artifact, settings: EvalSettings, *, key: str | None = None,
             eval_fields: dict[str, Any] | None = None, started_at: float | None = None,
             load_seconds: float | None = None, load_peak_rss_bytes: int = 0) -> RunRecord:
    """Evaluate the artifact on the settings' tasks with lm-eval and measure size and speed
    (`started_at`, `load_*`: when and at what cost the artifact was built, for the timing)."""
    import lm_eval

    from compbench.core.measure import (
        PeakMemory,
        Timer,
        TokenCounter,
        checkpoint_bytes,
        param_counts,
        throughput,
    )
    from compbench.harness.classify import is_classifier, score_classifier
    from compbench.harness.lm_model import CompressedLM
    from compbench.model_zoo.presets import preset_argument

    started = started_at or time.time()
    classifier = is_classifier(artifact.model)
    manager = task_manager({"pretrained": preset_argument(artifact.preset)}, settings.include_paths,
                           settings.tasks)
    if eval_fields is None:
        eval_fields = settings.key_fields(manager.task_index, artifact.device)
    compression = artifact.compression
    params_total, params_nonzero = param_counts(artifact.model)
    if classifier:
        model, max_length = artifact.model, settings.max_length or artifact.preset.max_length
        batch_sizes = [classifier_batch_size(model, settings.batch_size, max_length)]
        with PeakMemory() as eval_memory, Timer() as eval_timer:
            scores = {name: score_classifier(model, artifact.tokenizer, name, limit=settings.limit,
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
                          batch_size=settings.batch_size)
        model, max_length, device = lm.model, lm.max_length, str(lm.device)
        counter = TokenCounter(model)
        with PeakMemory() as eval_memory, Timer() as eval_timer:
            output = lm_eval.simple_evaluate(
                model=lm, tasks=list(settings.tasks), limit=settings.limit,
                num_fewshot=settings.num_fewshot, task_manager=manager, log_samples=False,
                bootstrap_iters=settings.bootstrap_iters)
        counter.remove()
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
    disk_bytes = artifact.checkpoint_bytes
    if disk_bytes is None and not artifact.recipe.unexportable_steps():
        disk_bytes = checkpoint_bytes(model)
    peak_cuda = eval_memory.peak_cuda_bytes
    return RunRecord(
        status="ok",
        run_key=key or run_key(artifact.key, eval_fields),
        model={"preset": artifact.preset.name, "source": artifact.preset.source,
               "revision": artifact.preset.revision,
               "dtype": str(model.dtype).removeprefix("torch."), "max_length": max_length,
               "batch_sizes": batch_sizes, "device": device, "origin": artifact.origin},
        artifact=artifact.identity,
        settings=eval_fields,
        compression=CompressionInfo(
            steps=compression.steps, seconds=compression.seconds,
            baseline_size_bytes=compression.size_bytes_before, size_bytes=compression.size_bytes,
            baseline_16bit_bytes=compression.size_bytes_16bit_before, params_total=params_total,
            params_nonzero=params_nonzero, checkpoint_bytes=disk_bytes),
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
        baseline_check=artifact.baseline_check and dataclasses.asdict(artifact.baseline_check),
        schema_version=SCHEMA_VERSION,
    )
