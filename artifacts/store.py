"""The models store: compressed checkpoints on disk, keyed by their artifact identity.

A sweep that needs a compressed model it has built before loads it from here instead of
compressing again. An entry is a folder named by the artifact key holding the model's and
tokenizer's `save_pretrained` files and `artifact.json` (the identity and what compression
measured, and each file's size and sha256); it is written in a staging folder and renamed, so
a kill at any moment leaves no half entry under a key. Every file is checked against its
sha256 before an entry is loaded: a damaged entry is reported and rebuilt, never loaded. Only
recipes whose checkpoint stock `from_pretrained` reloads bit-identically are stored (see
`storable`); a run evaluates the stored checkpoint, so a store hit and a fresh build give the
same numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compbench.artifacts.identity import library_versions
from compbench.core.io import (
    cache_dir,
    remove_stale_temporaries,
    sha256_file,
    staging_path,
    write_json_atomic,
)
from compbench.errors import CompbenchError

STORE_ENV = "COMPBENCH_STORE"
ENTRY_FILE = "artifact.json"
ENTRY_VERSION = 2  # 2: each file's size and sha256 recorded and checked on load


def default_store_dir() -> Path:
    """$COMPBENCH_STORE, else `store/` in compbench's cache dir."""
    return Path(os.environ.get(STORE_ENV) or cache_dir() / "store")


def storable(recipe) -> bool:
    """Whether a recipe's result is worth storing and reloads exactly: it compresses (a cast is
    recomputed in a second, and a cast model reloaded with `from_pretrained` recomputes rotary
    tables in full precision, so it would not be the same model) and every step exports."""
    from compbench.compressors import COMPRESSORS

    kinds = {COMPRESSORS[step.method].kind for step in recipe.steps}
    return bool(kinds - {"cast"}) and not recipe.unexportable_steps()


@dataclass(frozen=True)
class StoreEntry:
    """One stored compressed model: its key, what it is, its size and when it was made and used."""

    key: str
    path: Path
    model: str
    recipe: str
    size_bytes: int  # the folder's bytes on disk (tokenizer included)
    checkpoint_bytes: int  # the model's save_pretrained files alone
    created_at: float
    used_at: float
    identity: dict[str, Any]
    compression: dict[str, Any]
    files: dict[str, dict[str, Any]]  # relative path -> {size, sha256}, as written


class ModelStore:
    """Compressed checkpoints under `root`, one folder per artifact key."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        if self.root.exists() and not self.root.is_dir():
            raise CompbenchError(f"the models store {self.root} is a file; give a folder (--store "
                                 "DIR or $COMPBENCH_STORE; it is made on first use)")

    def path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> StoreEntry | None:
        """The entry for `key`, or None when there is none (or only a damaged one)."""
        folder = self.path(key)
        try:
            meta = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict):
            return None
        if meta.get("entry_version") != ENTRY_VERSION or meta.get("identity", {}).get("key") != key:
            return None
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        return StoreEntry(key, folder, meta["identity"]["source"]["preset"],
                          meta["identity"]["recipe"]["string"], size, meta["checkpoint_bytes"],
                          meta["created_at"], (folder / ENTRY_FILE).stat().st_mtime,
                          meta["identity"], meta["compression"], meta["files"])

    def damage(self, entry: StoreEntry) -> str | None:
        """What is wrong with an entry's files (one missing, resized, or changed: its sha256
        differs from the one recorded), or None when every file is as written."""
        for name, recorded in entry.files.items():
            path = entry.path / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != recorded["size"]:
                return f"{name} has {path.stat().st_size} bytes, {recorded['size']} were written"
            if sha256_file(path) != recorded["sha256"]:
                return f"{name} changed (its sha256 differs from the one recorded)"
        return None

    def put(self, model, tokenizer, identity: dict[str, Any], compression: dict[str, Any]) -> Path:
        """Save a freshly compressed model under its key (before any forward pass: bitsandbytes
        4-bit layers repack their weights for the CPU kernel on the first forward, and a
        checkpoint saved after that does not reload)."""
        target = self.path(identity["key"])
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CompbenchError(f"cannot write the model store {self.root}: {exc.strerror}") from None
        remove_stale_temporaries(self.root)
        staging = staging_path(target)
        model.save_pretrained(staging)
        model_bytes = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        tokenizer.save_pretrained(staging)
        files = {str(f.relative_to(staging)): {"size": f.stat().st_size, "sha256": sha256_file(f)}
                 for f in sorted(staging.rglob("*")) if f.is_file()}
        write_json_atomic(staging / ENTRY_FILE, {
            "entry_version": ENTRY_VERSION, "created_at": time.time(), "identity": identity,
            "compression": compression, "checkpoint_bytes": model_bytes, "files": files})
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return target

    def load(self, entry: StoreEntry, device: str):
        """The stored model and tokenizer, loaded with `from_pretrained` (of the auto class its
        config names) in the dtype it was saved in."""
        from transformers import AutoTokenizer

        from compbench.model_zoo.loading import auto_class_for, pretrained

        model = pretrained(auto_class_for(entry.path), str(entry.path), "auto")
        model.to(device)
        model.eval()
        os.utime(entry.path / ENTRY_FILE)  # "last used", for `store prune --unused-days`
        return model, AutoTokenizer.from_pretrained(entry.path)

    def entries(self) -> list[StoreEntry]:
        """Every complete entry, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(p.name) for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted((e for e in found if e is not None), key=lambda e: e.created_at)

    def remove(self, entry: StoreEntry) -> None:
        shutil.rmtree(entry.path)

    def prune(self, unused_days: float | None = None, dry_run: bool = False) -> list[tuple[Path, str]]:
        """Remove what no run can use, each with why: staging folders of killed writers,
        unreadable or damaged entries, entries made with library versions other than the
        installed ones (their key can never be asked for again), and, with `unused_days` (>= 0),
        entries not used for that long. With `dry_run`, only say what would go."""
        if unused_days is not None and not unused_days >= 0:
            raise CompbenchError(f"--unused-days must be a number of days >= 0, got {unused_days:g}")
        if not self.root.is_dir():
            return []
        removed = [(path, "left by a killed writer")
                   for path in remove_stale_temporaries(self.root, dry_run=dry_run)]
        now = time.time()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            entry = self.get(folder.name)
            if entry is None:
                reason = "unreadable, or written by another compbench version"
            elif entry.identity["libraries"] != library_versions(entry.identity["libraries"]):
                reason = "made with other library versions than the installed ones"
            elif (damage := self.damage(entry)) is not None:
                reason = f"damaged: {damage}"
            elif unused_days is not None and now - entry.used_at > unused_days * 86400:
                reason = f"not used for {(now - entry.used_at) / 86400:.1f} days"
            else:
                continue
            if not dry_run:
                shutil.rmtree(folder)
            removed.append((folder, reason))
        return removed
