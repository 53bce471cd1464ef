"""Model folders compbench makes once and keeps in its cache: built under a lock, renamed into
place, and checked against a manifest of every file's size and sha256 on each use.

A folder damaged in place (same size, other bytes) is reported, never loaded. The materialized
GGUF models (`model_zoo/gguf.py`) and the trained presets (`model_zoo/trained.py`) are built
this way.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from compbench.core.io import remove_stale_temporaries, sha256_file, staging_path, write_json_atomic
from compbench.errors import CompbenchError

MANIFEST = "compbench-manifest.json"


def manifest_ok(folder: Path) -> bool:
    """True when every file listed in the manifest exists with its recorded size and sha256
    (hashes are memoized per process by size and mtime: about a second for a 500 MB checkpoint)."""
    try:
        files = read_manifest(folder)["files"]
        return all(
            (folder / name).is_file() and (folder / name).stat().st_size == entry["size"]
            and sha256_file(folder / name) == entry["sha256"]
            for name, entry in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_manifest(folder: Path) -> dict:
    """The manifest's contents (what the builder recorded about the folder, and its files)."""
    return json.loads((folder / MANIFEST).read_text())


def write_manifest(folder: Path, about: dict) -> None:
    """Record every file's size and sha256 in the folder's manifest (checked by `manifest_ok`)."""
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    write_json_atomic(folder / MANIFEST, {**about, "files": files})


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


def build_in_staging(target: Path, fill: Callable[[Path], None]) -> None:
    """Have `fill` create a staging folder beside `target` (its path is handed over; `fill`
    writes the files and the manifest), then rename it onto `target`; a staging folder left by a
    killed build is removed first, and a failed build leaves nothing behind."""
    remove_stale_temporaries(target.parent)
    staging = staging_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        fill(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
