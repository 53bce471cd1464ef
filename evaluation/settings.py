"""The evaluation choices that can change a number (`EvalSettings`) and the run key they make
with an artifact's identity, so a results file is reused only for the very same run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from compbench.core.io import digest_of
from compbench.errors import CompbenchError

# The chat options and generation overrides enter a run's key only when set: every run made
# before they existed keeps its key, and a run with a template (or a larger token budget) never
# resumes from one without.
OPTIONAL_DEFAULTS = {"apply_chat_template": False, "fewshot_as_multiturn": False,
                     "system_instruction": None, "gen_kwargs": (), "kv_cache": None, "task_limits": ()}
# lm-eval's `--gen_kwargs` keys compbench passes on to every generative task (HFLM's generate);
# max_gen_toks and until are checked as a task YAML's are (`tasks/catalog.py`)
GEN_KWARGS = ("max_gen_toks", "until", "do_sample", "temperature")


@dataclass(frozen=True)
class EvalSettings:
    """How a run evaluates: tasks, document limit, few-shot, batch size, window, chat template."""

    tasks: tuple[str, ...]
    limit: int | float | None = None  # documents per task (a fraction when < 1); None: all
    num_fewshot: int | None = None  # None: each task's own
    batch_size: int | str = 1  # or "auto": the most rows that fit (see evaluation/batch_size.py)
    max_length: int | None = None  # evaluation window in tokens; None: the preset's
    bootstrap_iters: int = 1000  # draws for the stderr of metrics lm-eval bootstraps
    include_paths: tuple[str, ...] = ()  # folders of the user's own task YAMLs, beside compbench's
    # lm-eval's prompt formatting: True for the tokenizer's chat template, or a template's name
    apply_chat_template: bool | str = False
    fewshot_as_multiturn: bool = False  # few-shot examples as earlier chat turns
    system_instruction: str | None = None  # a system prompt before the first turn
    # lm-eval's --gen_kwargs: (key, value) pairs overriding each generative task's own
    gen_kwargs: tuple[tuple[str, Any], ...] = ()
    kv_cache: str | None = None  # generation's KV cache quantized: int8, int4 or int2 (kv_cache.py)
    # per-task document limits, (task, limit) pairs: set instead of `limit`, every task not
    # named is evaluated whole (lm-eval's --samples, as first-N counts)
    task_limits: tuple[tuple[str, int | float], ...] = ()

    def limit_of(self, task: str) -> int | float | None:
        """The document limit of one of the tasks (None: all its documents)."""
        return dict(self.task_limits).get(task, self.limit)

    def key_fields(self, task_index: dict, device: str) -> dict[str, Any]:
        """What can change a number: these settings, each task's YAML (version, or its content
        for a user's task) and data files' sha256, the device kind and the lm-eval version.
        Where the user's task folders are is not part of it: their content is."""
        import lm_eval

        from compbench.model_zoo.loading import device_kind
        from compbench.tasks.catalog import task_fingerprint

        tasks = {}
        for name in self.tasks:
            tasks.update(task_fingerprint(name, task_index))
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k != "include_paths" and (k not in OPTIONAL_DEFAULTS or v != OPTIONAL_DEFAULTS[k])}
        if self.gen_kwargs:
            fields["gen_kwargs"] = dict(self.gen_kwargs)
        if self.task_limits:
            fields["task_limits"] = dict(self.task_limits)
        return {**fields, "tasks": list(self.tasks), "task_fingerprints": tasks,
                "device_kind": device_kind(device), "lm_eval": lm_eval.__version__}


def document_limit(value: object) -> int | float:
    """A document limit: a whole count >= 1, or a fraction of the task's documents below 1."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value <= 0 or (value > 1 and not float(value).is_integer())):
        raise CompbenchError(f"expected a whole number of documents >= 1 or a fraction between 0 "
                             f"and 1, got {value!r}")
    return int(value) if value >= 1 else value


def parse_task_limits(limits: dict, tasks: tuple[str, ...]) -> tuple[tuple[str, int | float], ...]:
    """Per-task limits (`{wikitext2_ppl: 4}`) as sorted pairs: each key one of `tasks`, each value
    a document limit; the tasks not named are evaluated whole."""
    if not isinstance(limits, dict) or not limits:
        raise CompbenchError(f"expected a number or TASK: N pairs, got {limits!r}")
    pairs = []
    for task, value in limits.items():
        if task not in tasks:
            raise CompbenchError(f"'{task}' is not one of the tasks ({', '.join(tasks)}); a "
                                 "per-task limit names one of them")
        try:
            pairs.append((task, document_limit(value)))
        except CompbenchError as exc:
            raise CompbenchError(f"{task}: {exc}") from None
    return tuple(sorted(pairs))


def chat_options(apply_chat_template: bool | str | None, fewshot_as_multiturn: bool | None,
                 system_instruction: str | None) -> dict[str, Any]:
    """The chat fields of `EvalSettings` as lm-eval's command line resolves them: few-shot
    examples become chat turns by default when a template is applied, and only then."""
    template = apply_chat_template or False
    if isinstance(template, str) and not template.strip():
        raise CompbenchError("apply_chat_template: a template name must not be empty (true: the "
                             "tokenizer's own template)")
    if fewshot_as_multiturn and not template:
        raise CompbenchError("fewshot_as_multiturn needs a chat template: apply one "
                             "(--apply-chat-template, or apply_chat_template: true in a sweep)")
    if system_instruction is not None and not system_instruction.strip():
        raise CompbenchError("system_instruction: must not be empty (leave it out for none)")
    multiturn = bool(template) if fewshot_as_multiturn is None else bool(fewshot_as_multiturn)
    return {"apply_chat_template": template, "fewshot_as_multiturn": multiturn,
            "system_instruction": system_instruction}


def parse_gen_kwargs(value: str | dict | None) -> tuple[tuple[str, Any], ...]:
    """lm-eval's `--gen_kwargs` (`max_gen_toks=1024,temperature=0`, parsed as lm-eval parses
    it, or a sweep's mapping) as sorted pairs, each key one compbench passes on and each value
    of its kind."""
    from lm_eval.utils import simple_parse_args_string

    from compbench.tasks.catalog import generation_kwargs_problem

    if value is None:
        return ()
    if isinstance(value, str):
        if any("=" not in part for part in value.split(",") if part.strip()):
            raise CompbenchError(f"gen_kwargs: '{value}' is not KEY=VALUE[,KEY=VALUE] "
                                 "(e.g. max_gen_toks=1024)")
        value = simple_parse_args_string(value)
    if not isinstance(value, dict) or not value:
        raise CompbenchError(f"gen_kwargs: expected KEY=VALUE pairs (e.g. max_gen_toks=1024), got {value!r}")
    unknown = [key for key in value if key not in GEN_KWARGS]
    if unknown:
        raise CompbenchError(f"gen_kwargs: unknown key '{unknown[0]}'; allowed: {', '.join(GEN_KWARGS)}")
    problem = generation_kwargs_problem(value)
    sample, temperature = value.get("do_sample", False), value.get("temperature", 0)
    if problem is None and not isinstance(sample, bool):
        problem = f"do_sample must be true or false (false: greedy), got {sample!r}"
    if problem is None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                            or temperature < 0):
        problem = f"temperature must be a number >= 0, got {temperature!r}"
    if problem:
        raise CompbenchError(f"gen_kwargs: {problem}")
    return tuple(sorted((key, list(item) if isinstance(item, list) else item)
                        for key, item in value.items()))


def run_key(artifact_key: str, eval_fields: dict[str, Any]) -> str:
    """The digest naming one run: the artifact's identity plus the evaluation's key fields."""
    return digest_of({"artifact": artifact_key, "eval": eval_fields})
