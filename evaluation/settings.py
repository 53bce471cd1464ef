"""The evaluation choices that can change a number (`EvalSettings`) and the run key they make
with an artifact's identity, so a results file is reused only for the very same run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from compbench.core.io import digest_of
from compbench.errors import CompbenchError

# The chat options enter a run's key only when set: every run made before they existed keeps
# its key, and a run with a template never resumes from one without (or with another).
CHAT_DEFAULTS = {"apply_chat_template": False, "fewshot_as_multiturn": False,
                 "system_instruction": None}


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
                  if k != "include_paths" and (k not in CHAT_DEFAULTS or v != CHAT_DEFAULTS[k])}
        return {**fields, "tasks": list(self.tasks), "task_fingerprints": tasks,
                "device_kind": device_kind(device), "lm_eval": lm_eval.__version__}


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


def run_key(artifact_key: str, eval_fields: dict[str, Any]) -> str:
    """The digest naming one run: the artifact's identity plus the evaluation's key fields."""
    return digest_of({"artifact": artifact_key, "eval": eval_fields})
