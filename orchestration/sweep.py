"""Sweep files: a study as data. One YAML file names a grid of models x recipes (x calibration
seeds) and the tasks each is evaluated on; `load_sweep` validates all of it before anything runs
and returns the runs to make. Errors name the key path (`recipes[3]: unknown method 'wandaa'`).

    name: wanda-report
    models: [smollm2-135m]            # presets or checkpoint folders; an entry may be
                                      # {model: NAME, recipes: [...]}: its own recipes
    original_models: [meta-llama/Llama-2-7b-hf]   # what the study ran on (with --original)
    recipes:
      - fp32
      - "{magnitude,wanda}:{0.2,0.5}"  # brace groups expand to every combination
    tasks: [wikitext2_ppl, csqa]
    limit: 50                          # documents per task (a fraction when < 1), or per
                                       # task: {wikitext2_ppl: 4} (tasks not named: all)
    calibration: {dataset: wikitext2, nsamples: 32, seqlen: 512}
    seeds: [0, 1, 2]                   # calibrated recipes run once per seed
    include_paths: [my_tasks]          # the user's task YAMLs (relative to this file)
    baseline: fp32                     # what reports and the gate compare against
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compbench.compressors import Recipe
from compbench.errors import CompbenchError
from compbench.evaluation.settings import (
    EvalSettings,
    document_limit,
    parse_gen_kwargs,
    parse_task_limits,
)
from compbench.orchestration.plan import RunSpec

KEYS = {
    "name": "the study's name (default: the file's name)",
    "description": "a line saying what the study measures",
    "models": "presets or checkpoint folders ({model: NAME, recipes: [...]}: one with its own recipes)",
    "original_models": "presets the study was made on (GPU sized), run instead of models with --original",
    "recipes": "recipes; '{a,b}' groups expand to every combination",
    "tasks": "lm-eval task names",
    "limit": "documents per task (an int, or a fraction < 1), or per task {TASK: N} (others: all)",
    "num_fewshot": "few-shot examples (default: each task's own)",
    "batch_size": "evaluation batch size (a number, or auto)",
    "max_length": "evaluation window in tokens",
    "apply_chat_template": "true (the model's chat template) or a template's name (default: none)",
    "fewshot_as_multiturn": "few-shot examples as chat turns (default: true with a template)",
    "system_instruction": "a system prompt before the first chat turn",
    "gen_kwargs": "overrides of every generative task's generation_kwargs, e.g. {max_gen_toks: 1024}",
    "kv_cache": "generate with a quantized KV cache: int8, int4 or int2 (default: none)",
    "calibration": "dataset / nsamples / seqlen for every calibrated step that does not set them",
    "seeds": "calibration seeds: every calibrated recipe runs once per seed",
    "include_paths": "folders of your own task YAMLs (relative to the sweep file)",
    "device": "cpu, cuda, cuda:1 (default: cuda when present)",
    "dtype": "load dtype: float32, bfloat16, float16 or auto (default: the preset's)",
    "output_dir": "where results go (default: results/<name>)",
    "baseline": "the uncompressed recipe reports and the gate compare against (default: fp32)",
}
CALIBRATION_KEYS = {"dataset": "calibration", "nsamples": "nsamples", "seqlen": "seqlen"}
_BRACES = re.compile(r"\{([^{}]*)\}")
_KINDS = {int: "an integer", str: "a string"}


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file: the runs it makes and how its results are reported."""

    name: str
    path: Path
    description: str
    specs: tuple[RunSpec, ...]  # recipes parsed, calibration and seeds applied
    output_dir: Path
    baseline: str  # canonical recipe
    seeds: tuple[int, ...] | None


def expand_braces(text: str) -> list[str]:
    """`wanda:{0.2,0.5}` -> `wanda:0.2`, `wanda:0.5`; several groups give their product; an
    empty choice drops the group (`magnitude:0.25{,+int8}` -> `magnitude:0.25`, `magnitude:0.25+int8`)."""
    groups = _BRACES.findall(text)
    if not groups:
        return [text]
    if any("," not in group and not group.strip() for group in groups):
        raise CompbenchError(f"'{text}': empty {{}} group; list choices as {{a,b}} (an empty "
                             "choice, as in nf4{,+int8}, is allowed)")
    pieces = _BRACES.split(text)  # literal, group, literal, group, ..., literal
    expanded = []
    for choice in itertools.product(*(g.split(",") for g in groups)):
        parts = [pieces[0]]
        for option, literal in zip(choice, pieces[2::2], strict=True):
            parts += [option.strip(), literal]
        expanded.append("".join(parts))
    return expanded


def _with_calibration(recipe, calibration: dict[str, Any], seed: int | None):
    """The recipe with the sweep's calibration choices on every step that reads calibration
    data and left them at their defaults (and `seed` on every such step)."""
    from compbench.compressors import COMPRESSORS
    from compbench.compressors.recipe import Recipe, Step

    steps = []
    for step in recipe.steps:
        compressor = COMPRESSORS[step.method]
        config = step.config
        if compressor.uses_calibration(config):
            defaults = compressor.defaults()
            changes = {CALIBRATION_KEYS[k]: v for k, v in calibration.items()
                       if getattr(config, CALIBRATION_KEYS[k]) == defaults[CALIBRATION_KEYS[k]]}
            if seed is not None:
                changes["seed"] = seed
            try:
                config = dataclasses.replace(config, **changes)
            except ValueError as exc:
                raise CompbenchError(f"calibration: {exc}") from None
        steps.append(Step(step.method, config))
    return Recipe(tuple(steps))


def _list_of(data: dict, key: str, kind: type, required: bool) -> list:
    value = data.get(key)
    if value is None:
        if required:
            raise CompbenchError(f"{key}: required ({KEYS[key]})")
        return []
    if not isinstance(value, list) or not value:
        raise CompbenchError(f"{key}: expected a non-empty list, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, kind) or isinstance(item, bool):
            raise CompbenchError(f"{key}[{i}]: expected {_KINDS[kind]}, got {item!r}")
    return value


def _batch_size(data: dict) -> int | str:
    if data.get("batch_size") == "auto":
        return "auto"
    try:
        return _optional(data, "batch_size", (int,), minimum=1) or 1
    except CompbenchError as exc:
        raise CompbenchError(f"{exc} (or auto)") from None


def _optional(data: dict, key: str, kind: tuple[type, ...], minimum: float | None = None):
    value = data.get(key)
    if value is None:
        return None
    if (isinstance(value, bool) and bool not in kind) or not isinstance(value, kind):
        raise CompbenchError(f"{key}: expected {' or '.join(k.__name__ for k in kind)}, got {value!r}")
    if minimum is not None and value < minimum:
        raise CompbenchError(f"{key}: must be >= {minimum}, got {value}")
    return value


def _limits(data: dict, tasks: tuple[str, ...]):
    """`limit`: one document limit for every task, or a mapping of per-task limits."""
    value = data.get("limit")
    try:
        if isinstance(value, dict):
            return None, parse_task_limits(value, tasks)
        return (None if value is None else document_limit(value)), ()
    except CompbenchError as exc:
        raise CompbenchError(f"limit: {exc}") from None


def _kv_cache(data: dict) -> str | None:
    from compbench.evaluation.kv_cache import KV_CACHE_BITS

    kind = _optional(data, "kv_cache", (str,))
    if kind is not None and kind not in KV_CACHE_BITS:
        raise CompbenchError(f"kv_cache: '{kind}' is not a cache kind; use one of {', '.join(KV_CACHE_BITS)}")
    return kind


def _recipes(data: dict, calibration: dict, seeds: list[int] | None, key: str = "recipes") -> list[Recipe]:
    from compbench.compressors import COMPRESSORS, parse_recipe

    recipes: list[Recipe] = []
    for i, text in enumerate(_list_of(data, "recipes", str, required=True)):
        for expanded in expand_braces(text):
            where = f"{key}[{i}]" + (f" ({expanded})" if expanded != text else "")
            try:
                recipe = parse_recipe(expanded)
                calibrated = any(COMPRESSORS[s.method].uses_calibration(s.config) for s in recipe.steps)
                for seed in (seeds or [None]) if calibrated else [None]:
                    recipes.append(_with_calibration(recipe, calibration, seed))
            except CompbenchError as exc:
                raise CompbenchError(f"{where}: {exc}") from None
    canonical = [str(r) for r in recipes]
    duplicates = sorted({r for r in canonical if canonical.count(r) > 1})
    if duplicates:
        raise CompbenchError(f"{key}: listed more than once: {', '.join(duplicates)}")
    return recipes


def _models(data: dict, key: str, recipes: list[Recipe], calibration: dict, seeds: list[int] | None,
            get_preset) -> list[tuple[str, list[Recipe]]]:
    """Each model with the recipes it runs: the sweep's, or an entry's own
    ({model: NAME, recipes: [...]})."""
    entries = data.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list) or not entries:
        raise CompbenchError(f"{key}: expected a non-empty list, got {entries!r}")
    models = []
    for i, entry in enumerate(entries):
        own = None
        if isinstance(entry, dict):
            if set(entry) - {"model", "recipes"} or not isinstance(entry.get("model"), str):
                raise CompbenchError(f"{key}[{i}]: expected a model name or {{model: NAME, recipes: "
                                     f"[...]}}, got {entry!r}")
            if "recipes" in entry:
                own = _recipes(entry, calibration, seeds, key=f"{key}[{i}].recipes")
            entry = entry["model"]
        elif not isinstance(entry, str):
            raise CompbenchError(f"{key}[{i}]: expected a string, got {entry!r}")
        try:
            get_preset(entry)
        except CompbenchError as exc:
            raise CompbenchError(f"{key}[{i}]: {exc}") from None
        models.append((entry, own or recipes))
    return models


def _calibration(data: dict) -> dict[str, Any]:
    value = data.get("calibration") or {}
    if not isinstance(value, dict):
        raise CompbenchError(f"calibration: expected a mapping of {', '.join(CALIBRATION_KEYS)}, "
                             f"got {value!r}")
    for key, item in value.items():
        if key not in CALIBRATION_KEYS:
            raise CompbenchError(f"calibration.{key}: unknown key; allowed: {', '.join(CALIBRATION_KEYS)}")
        kind = str if key == "dataset" else int
        if isinstance(item, bool) or not isinstance(item, kind):
            raise CompbenchError(f"calibration.{key}: expected {_KINDS[kind]}, got {item!r}")
    from compbench.compressors.calibration import Calibrated

    try:
        Calibrated(**{CALIBRATION_KEYS[k]: v for k, v in value.items()})
    except ValueError as exc:
        raise CompbenchError(f"calibration: {exc}") from None
    return value


def _tasks(data: dict, include_paths: tuple[str, ...], first_model) -> tuple[str, ...]:
    """The sweep's tasks, each one lm-eval's index holds (the task manager for the sweep's first
    model, which the plan then uses)."""
    from compbench.evaluation.task_manager import task_manager
    from compbench.model_zoo.presets import preset_argument

    tasks = _list_of(data, "tasks", str, required=True)
    known = task_manager(include_paths, tuple(tasks), preset_argument(first_model)).task_index
    for i, task in enumerate(tasks):
        if task not in known:
            raise CompbenchError(f"tasks[{i}]: unknown task '{task}' (see `compbench tasks`; "
                                 "any lm-eval task name, or one from include_paths, also works)")
    return tuple(tasks)


def load_sweep(path: Path | str, original: bool = False) -> Sweep:
    """Read and validate a sweep file whole; the runs it makes (`original`: on its
    `original_models` instead of `models`)."""
    from compbench.compressors import parse_recipe
    from compbench.evaluation.settings import chat_options
    from compbench.evaluation.task_manager import check_include_paths
    from compbench.model_zoo.presets import get_preset

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CompbenchError(f"cannot read sweep file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise CompbenchError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    try:
        return _validate(data, path, original, parse_recipe, check_include_paths, get_preset,
                         chat_options)
    except CompbenchError as exc:
        raise CompbenchError(f"{path}: {exc}") from None


def _validate(data, path: Path, original: bool, parse_recipe, check_include_paths, get_preset,
              chat_options) -> Sweep:
    if not isinstance(data, dict):
        raise CompbenchError(f"expected a mapping of keys ({', '.join(KEYS)}), got {type(data).__name__}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise CompbenchError(f"{unknown[0]}: unknown key; allowed: {', '.join(KEYS)}")
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise CompbenchError(f"name: letters, digits, '.', '_' or '-' only, got {name!r}")
    if data.get("models") is None:
        raise CompbenchError(f"models: required ({KEYS['models']})")
    if original and data.get("original_models") is None:
        raise CompbenchError("original_models: --original asks for them but the file names none")
    includes = _list_of(data, "include_paths", str, required=False)
    try:
        include_paths = check_include_paths(tuple(str(path.parent / p) for p in includes))
    except CompbenchError as exc:
        raise CompbenchError(f"include_paths: {exc}") from None
    seeds = _list_of(data, "seeds", int, required=False) or None
    negative = [seed for seed in seeds or [] if seed < 0]
    if negative:
        raise CompbenchError(f"seeds: a calibration seed is a whole number >= 0, got {negative[0]}")
    calibration = _calibration(data)
    recipes = _recipes(data, calibration, seeds)
    models = _models(data, "models", recipes, calibration, seeds, get_preset)
    originals = _models(data, "original_models", recipes, calibration, seeds, get_preset)
    first = (originals if original else models)[0][0]
    tasks = _tasks(data, include_paths, get_preset(first))
    baseline = str(data.get("baseline", "fp32"))
    try:
        baseline = str(parse_recipe(baseline))
    except CompbenchError as exc:
        raise CompbenchError(f"baseline: {exc}") from None
    for model, own in models + originals:
        if baseline not in [str(r) for r in own]:
            where = "the recipes" if own is recipes else f"the recipes of {model}"
            raise CompbenchError(f"baseline: '{baseline}' is not one of {where}; add it (reports "
                                 "and the gate compare every run with it)")
    limit, task_limits = _limits(data, tasks)
    settings = EvalSettings(
        tasks=tasks, limit=limit, task_limits=task_limits,
        num_fewshot=_optional(data, "num_fewshot", (int,), minimum=0),
        batch_size=_batch_size(data),
        max_length=_optional(data, "max_length", (int,), minimum=1), include_paths=include_paths,
        gen_kwargs=parse_gen_kwargs(data.get("gen_kwargs")),
        kv_cache=_kv_cache(data),
        **chat_options(_optional(data, "apply_chat_template", (bool, str)),
                       _optional(data, "fewshot_as_multiturn", (bool,)),
                       _optional(data, "system_instruction", (str,))))
    for key in ("device", "dtype", "description", "output_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CompbenchError(f"{key}: expected a string, got {data[key]!r}")
    from compbench.model_zoo.loading import DTYPES, check_device

    try:
        check_device(data.get("device"))
    except CompbenchError as exc:
        raise CompbenchError(f"device: {str(exc).removeprefix('--device ')}") from None
    if data.get("dtype") is not None and data["dtype"] not in DTYPES:
        raise CompbenchError(f"dtype: '{data['dtype']}' is not one of {', '.join(DTYPES)}")
    specs = tuple(RunSpec(model=m, recipe=r, settings=settings, device=data.get("device"),
                          dtype=data.get("dtype"))
                  for m, own in (originals if original else models) for r in own)
    output_dir = Path(data.get("output_dir") or Path("results") / name)
    return Sweep(name, path, data.get("description") or "", specs, output_dir, baseline,
                 tuple(seeds) if seeds else None)
