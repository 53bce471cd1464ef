"""Recipes: the string grammar (`magnitude:0.25+nf4:double_quant=true`) and its YAML long form.

Grammar (no commas, no spaces, since lm-eval splits `--model_args` on commas):

    recipe := step ("+" step)*
    step   := method (":" arg)*
    arg    := value | key "=" value      # a bare value only first: the method's main option

A recipe may also be the path of a YAML file holding a list of steps
(`- {method: magnitude, sparsity: 0.25}`), or a mapping with such a list under `steps:`.
Both forms parse to the same `Recipe` and print back the same string.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from compbench.compressors.registry import COMPRESSORS, Compressor
from compbench.errors import CompbenchError

_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    """One method with its validated config."""

    method: str
    config: Any

    def __str__(self) -> str:
        return self.method + "".join(f":{a}" for a in _format_args(self.method, self.config))

    def as_dict(self) -> dict[str, Any]:
        """The step as stored in results JSON: method, config version, full config."""
        from compbench.compressors.calibration import CALIBRATION_FIELDS

        values = dataclasses.asdict(self.config)
        version = values.pop("version")
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)}
        for name in getattr(self.config, "KEYED_WHEN_SET", ()):  # options added after the method
            if values[name] == defaults[name]:
                values.pop(name)
        if not COMPRESSORS[self.method].uses_calibration(self.config):
            for name in CALIBRATION_FIELDS:
                values.pop(name, None)
        return {"method": self.method, "version": version, "config": values}


@dataclass(frozen=True)
class Recipe:
    """An ordered chain of compression steps, applied first to last."""

    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return "+".join(str(s) for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"string": str(self), "steps": [s.as_dict() for s in self.steps]}

    def untrainable_steps(self) -> list[Step]:
        """Steps whose layers peft cannot carry a LoRA adapter on (packed or torch-quantized)."""
        return [s for s in self.steps if not COMPRESSORS[s.method].can_train(s.config)]

    def unexportable_steps(self) -> list[Step]:
        """Steps whose result `from_pretrained` cannot reload (no on-disk size, no store)."""
        return [s for s in self.steps if not COMPRESSORS[s.method].can_export(s.config)]

    def for_export(self, dtype: str) -> Recipe:
        """The recipe `compbench export` builds on weights loaded in `dtype`: each step that
        does not save replaced by the step its compressor names as holding the same numbers in
        a stock format (`int8wo` -> `torchao-int8`, `rtn:4:format=int4-cpu` -> `rtn:4`). A
        step with no such twin is an error naming it."""
        steps, blocked = [], []
        for step in self.steps:
            compressor = COMPRESSORS[step.method]
            if compressor.can_export(step.config):
                steps.append(step)
                continue
            twin = compressor.exported_as(step.config, dtype) if compressor.exported_as else None
            if twin is None:
                blocked.append(str(step))
            else:
                steps.append(make_step(*twin))
        if blocked:
            raise CompbenchError(f"recipe '{self}' cannot be exported as a Hugging Face checkpoint: "
                                 f"{', '.join(blocked)} has no serialized format that "
                                 "from_pretrained reloads")
        return Recipe(tuple(steps))


def _main_option(compressor: Compressor) -> str | None:
    """The option a bare first value sets (declared as `MAIN_OPTION` on the config class)."""
    return getattr(compressor.config_cls, "MAIN_OPTION", None)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # mixed:5, not mixed:5.0: one canonical spelling
    return str(value)


def _format_args(method: str, config: Any) -> list[str]:
    """Canonical arguments: the main option bare, then every non-default option as key=value."""
    compressor = COMPRESSORS[method]
    main = _main_option(compressor)
    defaults = compressor.defaults()
    args = []
    for f in fields(config):
        if f.name == "version":
            continue
        value = getattr(config, f.name)
        if f.name == main:
            args.insert(0, _format_value(value))
        elif value != defaults[f.name]:
            args.append(f"{f.name}={_format_value(value)}")
    return args


def _get_compressor(method: str) -> Compressor:
    if method in COMPRESSORS:
        return COMPRESSORS[method]
    close = difflib.get_close_matches(method, COMPRESSORS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise CompbenchError(
        f"unknown compression method '{method}'; {hint}known methods: {', '.join(sorted(COMPRESSORS))}"
    )


def _coerce(method: str, key: str, raw: Any, annotation: Any) -> Any:
    """Convert a recipe value (a string, or a YAML scalar) to the config field's type."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    kind = kind.replace(" ", "")
    try:
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("true", "1", "yes"):
                return True
            if str(raw).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if kind.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind.startswith("int"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
    except ValueError:
        raise CompbenchError(
            f"{method}: option '{key}' must be a {kind.split('|')[0]}, got '{raw}'"
        ) from None
    return str(raw)


def make_step(method: str, options: dict[str, Any], main_value: Any = None) -> Step:
    """Validate one step's options against its method's config and build the `Step`."""
    compressor = _get_compressor(method)
    known = compressor.option_names()
    types = {f.name: f.type for f in fields(compressor.config_cls)}
    values: dict[str, Any] = {}
    if main_value is not None:
        main = _main_option(compressor)
        if main is None:
            raise CompbenchError(
                f"{method}: takes no bare value (got '{main_value}'); "
                f"use key=value with one of: {', '.join(known) or 'no options'}"
            )
        values[main] = _coerce(method, main, main_value, types[main])
    for key, raw in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            owners = sorted(name for name, other in COMPRESSORS.items() if key in other.option_names())
            hint = (f"did you mean '{close[0]}'? " if close else
                    f"'{key}' is an option of {', '.join(owners)}; " if owners else "")
            raise CompbenchError(
                f"{method}: unknown option '{key}'; {hint}options: {', '.join(known) or 'none'}"
            )
        if key in values:
            raise CompbenchError(f"{method}: option '{key}' given twice")
        values[key] = _coerce(method, key, raw, types[key])
    try:
        config = compressor.config_cls(**values)
    except ValueError as exc:
        raise CompbenchError(f"{method}: {exc}") from None
    return Step(method, config)


def _parse_step(text: str) -> Step:
    method, *args = text.split(":")
    if not method:
        raise CompbenchError(f"malformed recipe step '{text}': it must start with a method name")
    options: dict[str, str] = {}
    main_value = None
    for i, arg in enumerate(args):
        if "=" in arg:
            key, _, value = arg.partition("=")
            if not _KEY.match(key) or not value:
                raise CompbenchError(f"malformed option '{arg}' in recipe step '{text}'; use key=value")
            if key in options:
                raise CompbenchError(f"{method}: option '{key}' given twice")
            options[key] = value
        elif i == 0 and arg:
            main_value = arg
        else:
            raise CompbenchError(
                f"malformed recipe step '{text}': only the first argument may be a bare value, "
                "the rest are key=value"
            )
    return make_step(method, options, main_value)


def _check_order(steps: list[Step]) -> None:
    for i, step in enumerate(steps[:-1]):
        if COMPRESSORS[step.method].terminal:
            raise CompbenchError(
                f"'{step.method}' replaces layers with packed quantized ones and must be the "
                f"last step; '{steps[i + 1].method}' cannot follow it"
            )


def _from_yaml(path: Path) -> Recipe:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CompbenchError(f"cannot read recipe file {path}: {exc}") from None
    if isinstance(data, dict) and "steps" in data:
        data = data["steps"]
    if not isinstance(data, list) or not data:
        raise CompbenchError(f"recipe file {path} must hold a non-empty list of steps")
    steps = []
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, dict) or "method" not in entry:
            raise CompbenchError(f"recipe file {path}, step {i}: expected a mapping with 'method'")
        options = {k: v for k, v in entry.items() if k != "method"}
        steps.append(make_step(str(entry["method"]), options))
    _check_order(steps)
    return Recipe(tuple(steps))


def parse_recipe(text: str) -> Recipe:
    """Parse a recipe string, or the path of a YAML recipe file, into a validated `Recipe`."""
    text = text.strip()
    if text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise CompbenchError(f"recipe file {path} not found")
        return _from_yaml(path)
    if not text:
        raise CompbenchError("empty recipe; e.g. 'fp32', 'nf4' or 'magnitude:0.25+int8'")
    if "," in text or any(c.isspace() for c in text):
        raise CompbenchError(
            f"recipe '{text}' contains a comma or a space; join steps with '+' and arguments "
            "with ':' (lm-eval splits --model_args on commas)"
        )
    parts = text.split("+")
    if any(not p for p in parts):
        raise CompbenchError(f"malformed recipe '{text}': empty step between '+' signs")
    steps = [_parse_step(p) for p in parts]
    _check_order(steps)
    return Recipe(tuple(steps))
