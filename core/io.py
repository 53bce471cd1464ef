"""Files: the cache dir, the local data dir and its JSONL rows, atomic writes, content hashes.

The data dir (`--data-dir` or `$COMPBENCH_DATA_DIR`) holds `<dataset>/<split>.jsonl`, the layout
of `../shared/data`. Missing files and malformed lines are reported with file and line number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compbench.errors import CompbenchError

DATA_DIR_ENV = "COMPBENCH_DATA_DIR"
CACHE_ENV = "COMPBENCH_CACHE"


def cache_dir() -> Path:
    """Root of compbench's cache: $COMPBENCH_CACHE, else the user cache dir."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("compbench"))


def _checked(path: Path) -> Path:
    if not path.is_dir():
        raise CompbenchError(
            f"data dir {path} does not exist (from --data-dir / ${DATA_DIR_ENV}); point it at a "
            "folder laid out as <dataset>/<split>.jsonl, e.g. ../shared/data"
        )
    return path


def data_dir() -> Path | None:
    """The configured local data dir, or None to load from the hub. A set but absent dir is an error."""
    value = os.environ.get(DATA_DIR_ENV)
    return _checked(Path(value).expanduser()) if value else None


def set_data_dir(path: str | os.PathLike) -> None:
    """Point dataset loading at a local data dir (an env var, so lm-eval's task loading and
    worker processes see it)."""
    os.environ[DATA_DIR_ENV] = str(_checked(Path(path).expanduser().resolve()))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; each non-blank line must be a JSON object."""
    return [row for _, row in read_jsonl_lines(path)]


def read_jsonl_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of each non-blank line of a JSONL file, for messages that name a line."""
    if not path.is_file():
        raise CompbenchError(
            f"dataset file {path} not found; set --data-dir / ${DATA_DIR_ENV} to a folder holding "
            "<dataset>/<split>.jsonl"
        )
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CompbenchError(f"{path}:{number}: malformed JSON line ({exc.msg})") from None
            if not isinstance(row, dict):
                raise CompbenchError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append((number, row))
    if not rows:
        raise CompbenchError(f"{path} holds no rows")
    return rows


# compbench's temporary files and staging folders carry ".compbench-<writer pid>-" in their name
_TMP = re.compile(r"\.compbench-(\d+)-")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without error (removed otherwise). A kill at any moment leaves either the old file or the
    new one, never a partial one; the temporary name holds the writer's pid (see
    `remove_stale_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.compbench-{os.getpid()}-", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def staging_path(path: Path) -> Path:
    """A folder beside `path` to build it in before renaming it onto `path` (named for this
    process, see `remove_stale_temporaries`)."""
    return path.parent / f".{path.name}.compbench-{os.getpid()}-staging"


def remove_stale_temporaries(folder: Path, dry_run: bool = False) -> list[Path]:
    """Remove compbench's own temporary files and staging folders in `folder` whose writing
    process is gone (left by a kill mid-write); a live process's are left alone, and so is
    everything not compbench's. Returns what was removed (with `dry_run`: what would be)."""
    import shutil

    import psutil

    removed = []
    for candidate in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _TMP.search(candidate.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            if dry_run:
                pass
            elif candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write text atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented JSON, written atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def as_stored(value: Any) -> Any:
    """`value` as a JSON file gives it back (tuples as lists, keys as strings): what a stored
    copy is compared with."""
    return json.loads(json.dumps(value))


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """The file's sha256, memoized in this process by (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def digest_of(value: Any) -> str:
    """sha256 of a JSON-able value's canonical form (sorted keys): a stable identity key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
