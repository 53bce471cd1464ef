"""A trained peft adapter on its compressed base: read it, name it, load it, merge it.

An adapter evaluated with `compbench eval --adapter` becomes part of the artifact's identity
(the sha256 of its saved files), and the artifact's size counts the adapter's bytes, as the
MMLU study reports the size of base plus adapter.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.artifacts.build import Artifact
from compbench.core.io import digest_of, sha256_file, write_json_atomic
from compbench.errors import CompbenchError

BASE_FILE = "compbench-base.json"  # what `compbench finetune` trained the adapter on


@dataclass(frozen=True)
class AdapterInfo:
    """A saved LoRA adapter folder: its peft config, its files' sha256, and the base it was
    trained on (`compbench finetune` records it; None for an adapter made elsewhere)."""

    path: Path
    config: dict[str, Any]
    files: dict[str, str]
    flag: str = "--adapter"  # the option that named it, for messages
    base: dict[str, Any] | None = None  # {"preset", "recipe", "source": the source identity}

    @property
    def label(self) -> str:
        return f"lora:r={self.config['r']}:alpha={self.config['lora_alpha']:g}"

    @property
    def weight_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("adapter_model*"))

    @property
    def num_labels(self) -> int | None:
        """A classification adapter's class count: the rows of the head it trained in full
        (`classifier` or `score`, saved beside the LoRA matrices); None for other adapters."""
        if self.config.get("task_type") != "SEQ_CLS":
            return None
        from safetensors import safe_open

        if not (self.path / "adapter_model.safetensors").is_file():
            raise CompbenchError(f"{self.flag}={self.path}: no adapter_model.safetensors (the adapter's "
                                 "weights) there; give the folder `compbench finetune` wrote")
        with safe_open(str(self.path / "adapter_model.safetensors"), "pt") as weights:
            for name in weights.keys():
                parts = name.split(".")
                if parts[-1] == "weight" and parts[-2] in ("classifier", "score", "out_proj"):
                    return weights.get_slice(name).get_shape()[0]
        raise CompbenchError(f"{self.flag}={self.path}: a classification adapter without its "
                             "head's weights (classifier or score)")


def require_peft(what: str) -> None:
    """peft (and trl, for SFT) are the optional extra `compbench[finetune]`."""
    import importlib.util

    missing = [name for name in ("peft", "trl") if importlib.util.find_spec(name) is None]
    if missing:
        raise CompbenchError(f"{what} needs {' and '.join(missing)}: pip install 'compbench[finetune]'")


def read_adapter(path: str | Path, flag: str = "--adapter") -> AdapterInfo:
    """A peft LoRA adapter folder (`adapter_config.json` + weights); anything else is an error
    naming `flag`, the option that gave the folder."""
    require_peft(flag)
    folder = Path(path)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise CompbenchError(f"{flag}={path}: no adapter_config.json there; give the adapter "
                             "folder `compbench finetune` wrote (<output-dir>/adapter)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompbenchError(f"{flag}={path}: adapter_config.json is unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise CompbenchError(f"{flag}={path}: adapter_config.json holds a {type(config).__name__}, "
                             "not peft's mapping of settings")
    if config.get("peft_type") != "LORA":
        raise CompbenchError(f"{flag}={path} is a {config.get('peft_type')} adapter; compbench "
                             "loads LoRA adapters")
    files = {p.name: sha256_file(p) for p in sorted(folder.glob("adapter_*"))}
    try:
        base = json.loads((folder / BASE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        base = None
    except (OSError, ValueError) as exc:
        raise CompbenchError(f"{flag}={path}: {BASE_FILE} is unreadable ({exc})") from None
    return AdapterInfo(folder.resolve(), config, files, flag, base)


def record_base(folder: Path, identity: dict[str, Any]) -> None:
    """Write beside a trained adapter what it was trained on: the base model's source identity
    and its recipe (checked by `check_base` wherever the adapter is loaded)."""
    write_json_atomic(folder / BASE_FILE, {"preset": identity["source"]["preset"],
                                           "recipe": identity["recipe"]["string"],
                                           "source": identity["source"]})


def check_base(adapter: AdapterInfo, identity: dict[str, Any]) -> None:
    """An adapter fits only the model it was trained on: one trained on another model (another
    source: other weights) is refused, whatever the shapes say. The recipe may differ (a QLoRA
    adapter on the same model quantized otherwise)."""
    if adapter.base is None:
        return
    trained, here = dict(adapter.base["source"]), dict(identity["source"])
    trained.pop("preset", None)
    here.pop("preset", None)
    if trained != here:
        raise CompbenchError(
            f"{adapter.flag}={adapter.path} was trained on {adapter.base['preset']}, not on "
            f"{identity['source']['preset']} (other weights); an adapter fits only the model it "
            "was trained on")


ADAPTER_LOAD_VERSION = 2  # 2: 4-bit bases computed as in training (see `with_adapter`)


def adapter_identity(base: dict[str, Any], adapter: AdapterInfo) -> dict[str, Any]:
    """The identity of the base with the adapter on it: its key covers the adapter's files and
    how the adapter is loaded."""
    key = digest_of({"base": base["key"], "adapter_files": adapter.files,
                     "load_version": ADAPTER_LOAD_VERSION})
    return {**base, "key": key, "base_key": base["key"],
            "adapter": {"label": adapter.label, "method": "lora", "path": str(adapter.path),
                        "files": adapter.files, "config": adapter.config,
                        "load_version": ADAPTER_LOAD_VERSION}}


def check_causal(adapter: AdapterInfo) -> None:
    """lm-eval scores causal LMs: a classification adapter is scored by compbench's classifier
    path instead (`compbench eval --adapter DIR --tasks <its dataset>`)."""
    if adapter.config.get("task_type") != "CAUSAL_LM":
        raise CompbenchError(
            f"{adapter.flag}={adapter.path} was trained for {adapter.config.get('task_type')} (a "
            "classification head): lm-eval scores causal LMs; score it with `compbench eval "
            f"--adapter {adapter.path} --tasks DATASET` (sst2, kasut_math or commonsense_qa)")


def with_adapter(artifact: Artifact, adapter: AdapterInfo) -> Artifact:
    """The artifact with the adapter loaded onto its model (peft injects the LoRA layers into
    the model itself, which is handed on), its identity and size counting the adapter. Its
    bitsandbytes 4-bit layers compute as they did in training (bitsandbytes' CPU bf16 repack
    off), which the artifact's `compute_path` records."""
    from peft import PeftModel

    from compbench.compressors.bnb import disable_cpu_bf16_repack_
    from compbench.core.measure import checkpoint_bytes

    base_disk = artifact.checkpoint_bytes
    if base_disk is None and not artifact.recipe.unexportable_steps():
        base_disk = checkpoint_bytes(artifact.model)  # before any forward (bitsandbytes 4-bit)
    exact = disable_cpu_bf16_repack_(artifact.model)
    compute_path = (f"{exact} bitsandbytes 4-bit layers without the CPU bf16 repack, as the adapter "
                    "was trained" if exact else None)
    try:
        peft_model = PeftModel.from_pretrained(artifact.model, str(adapter.path), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CompbenchError(f"{adapter.flag}={adapter.path} does not fit {artifact.preset.name} with "
                             f"recipe {artifact.recipe}: {_first_lines(exc)}") from None
    model = peft_model.get_base_model()
    model.eval()
    compression = dataclasses.replace(artifact.compression, model=model,
                                      size_bytes=artifact.compression.size_bytes + adapter.weight_bytes)
    return dataclasses.replace(
        artifact, model=model, compression=compression,
        identity=adapter_identity(artifact.identity, adapter),
        checkpoint_bytes=None if base_disk is None else base_disk + adapter.weight_bytes,
        compute_path=compute_path)


def check_mergeable(recipe) -> None:
    """Merging adds the LoRA update into the base's weights: float (cast or pruned) bases
    only, since a quantized base would have to be requantized (a different, lossy model)."""
    from compbench.compressors import COMPRESSORS

    quantized = [str(step) for step in recipe.steps if COMPRESSORS[step.method].kind == "quantize"]
    if quantized:
        raise CompbenchError(
            f"--merge: the base's layers are quantized by {', '.join(quantized)}; adding the LoRA "
            "update would mean requantizing them (a different, lossy model). Export without "
            "--merge (base and adapter side by side), or fine-tune a float or pruned base")


def merged(artifact: Artifact, adapter: AdapterInfo):
    """The base with the adapter's update added into its weights (`merge_and_unload`); a
    pruned base's zeros are filled by the update (the merged model is dense)."""
    from peft import PeftModel

    check_mergeable(artifact.recipe)
    peft_model = PeftModel.from_pretrained(artifact.model, str(adapter.path))
    return peft_model.merge_and_unload()


def _first_lines(exc: Exception) -> str:
    """A library's load error in a line: torch lists every tensor whose shape differs (hundreds
    of lines for a LoRA adapter of another model); this names how many and the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    mismatched = [line for line in lines if line.startswith("size mismatch for")]
    if mismatched:
        return f"{len(mismatched)} tensor(s) differ in shape, e.g. {mismatched[0].rstrip('.')}"
    return lines[0] if lines else type(exc).__name__
