"""llama.cpp as the speed yardstick: the GGUF file a preset came from, and llama.cpp's own Q4_0,
Q8_0 and F16 of it (made by its quantize tool, `llama_model_quantize`, once, into the cache),
timed by the same code as compbench's models (`speed.measure_once`) through llama-cpp-python.

llama-cpp-python is the optional extra `llamacpp`; no wheel of it runs on this machine's C
library, so `make llama-cpp` builds it from source once (pip keeps the wheel). Without it the
speed table says why there is no llama.cpp row; `make test` never needs it.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from compbench.core.io import atomic_path, cache_dir
from compbench.errors import CompbenchError

# llama.cpp's own formats of the source file: llama_ftype values of llama.h
LLAMA_FTYPES = {"Q4_0": 2, "Q8_0": 7, "F16": 1}
INSTALL_HINT = "make llama-cpp (builds llama-cpp-python from source once, 5.5 minutes here on 2 cores)"


# llama.cpp's log callback type (llama-cpp-python's `llama_log_callback`), writing nothing; kept
# here so that it outlives every call that uses it
_SILENT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *_: None)


def missing_reason() -> str | None:
    """Why llama.cpp cannot be timed here, or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return f"llama-cpp-python is not installed: {INSTALL_HINT}"
    return None


def quantized_gguf(source: Path, ftype: str, threads: int) -> Path:
    """llama.cpp's `ftype` version of a GGUF file, made once into the cache (requantizing a
    quantized source is allowed: the embedded models are Q4_1 / Q4_K_M files)."""
    import llama_cpp

    target = cache_dir() / "llamacpp" / f"{source.stem}.{ftype}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPES[ftype]
    params.allow_requantize = True
    params.nthread = threads
    llama_cpp.llama_log_set(_SILENT, ctypes.c_void_p(0))  # its loader dumps every key and tensor
    with atomic_path(target) as staging:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(staging).encode(),
                                                ctypes.byref(params))
        if status != 0:
            raise CompbenchError(f"llama.cpp could not make {ftype} of {source} (status {status})")
    return target


def gguf_bytes_read_per_token(path: Path) -> int:
    """Weight bytes one decoded token reads from a GGUF model: every tensor once, but one row of
    the token embedding, which is read whole only when it doubles as the output head (no
    `output.weight`)."""
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(path).tensors}
    total = sum(int(t.n_bytes) for t in tensors.values())
    embedding = tensors.get("token_embd.weight")
    if embedding is None or "output.weight" not in tensors:
        return total
    rows = int(embedding.shape[-1])  # GGUF lists dimensions innermost first: (hidden, vocab)
    return total - int(embedding.n_bytes) + int(embedding.n_bytes) // rows


def file_type(path: Path) -> str:
    """A GGUF file's weight format as llama.cpp names it (Q4_1, Q4_K_M, F16, …)."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return "unknown format"
    return LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")


class LlamaCppSubject:
    """A GGUF file in llama.cpp, generating greedily from token ids (the preset's tokenizer ids,
    which are the file's own vocabulary)."""

    def __init__(self, path: Path, context: int, threads: int):
        from llama_cpp import Llama

        self.path = path
        self.llm = Llama(model_path=str(path), n_ctx=context, n_batch=512, n_threads=threads,
                         n_threads_batch=threads, verbose=False)

    def _generate(self, ids: list[int]):
        self.llm.reset()  # no prompt prefix reused from the KV cache: every prompt is computed
        return self.llm.generate(ids, top_k=1, temp=0.0, reset=True)

    def first_token_seconds(self, ids: list[int]) -> float:
        start = time.perf_counter()
        next(self._generate(ids))
        return time.perf_counter() - start

    def decode(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        """Seconds to the first new token, and from it to the last (new_tokens - 1 steps)."""
        start = time.perf_counter()
        tokens = self._generate(ids)
        next(tokens)
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            next(tokens)
        return first - start, time.perf_counter() - first

    def batch_seconds(self, rows: list[list[int]], new_tokens: int) -> float | None:
        """None: llama-cpp-python's generation runs one sequence at a time."""
        return None
