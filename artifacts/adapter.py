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
from compbench.core.io import digest_of, sha256_file
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class AdapterInfo:
    """A saved LoRA adapter folder: its peft config and its files' sha256."""

    path: Path
    config: dict[str, Any]
    files: dict[str, str]
    flag: str = "--adapter"  # the option that named it, for messages

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
    return AdapterInfo(folder.resolve(), config, files, flag)


def adapter_identity(base: dict[str, Any], adapter: AdapterInfo) -> dict[str, Any]:
    """The identity of the base with the adapter on it: its key covers the adapter's files."""
    key = digest_of({"base": base["key"], "adapter_files": adapter.files})
    return {**base, "key": key, "base_key": base["key"],
            "adapter": {"label": adapter.label, "method": "lora", "path": str(adapter.path),
                        "files": adapter.files, "config": adapter.config}}


def check_causal(adapter: AdapterInfo) -> None:
    """lm-eval scores causal LMs: a classification adapter's numbers are its finetune run's."""
    if adapter.config.get("task_type") != "CAUSAL_LM":
        raise CompbenchError(
            f"{adapter.flag}={adapter.path} was trained for {adapter.config.get('task_type')} (a "
            "classification head): lm-eval scores causal LMs, so only SFT adapters are evaluated "
            "here; its held-out scores are in its `compbench finetune` results JSON")


def with_adapter(artifact: Artifact, adapter: AdapterInfo) -> Artifact:
    """The artifact with the adapter loaded onto its model (peft injects the LoRA layers into
    the model itself, which is handed on), its identity and size counting the adapter."""
    from peft import PeftModel

    from compbench.core.measure import checkpoint_bytes

    base_disk = artifact.checkpoint_bytes
    if base_disk is None and not artifact.recipe.unexportable_steps():
        base_disk = checkpoint_bytes(artifact.model)  # before any forward (bitsandbytes 4-bit)
    try:
        peft_model = PeftModel.from_pretrained(artifact.model, str(adapter.path), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CompbenchError(f"{adapter.flag}={adapter.path} does not fit {artifact.preset.name} with "
                             f"recipe {artifact.recipe}: {exc}") from None
    model = peft_model.get_base_model()
    model.eval()
    compression = dataclasses.replace(artifact.compression, model=model,
                                      size_bytes=artifact.compression.size_bytes + adapter.weight_bytes)
    return dataclasses.replace(
        artifact, model=model, compression=compression,
        identity=adapter_identity(artifact.identity, adapter),
        checkpoint_bytes=None if base_disk is None else base_disk + adapter.weight_bytes)


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
