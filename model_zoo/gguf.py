"""Any GGUF file as a model source: dequantized once into a Hugging Face checkpoint, and verified.

transformers' GGUF loader dequantizes the weights (with gguf's own numpy code) and builds the
config; compbench saves that as an ordinary checkpoint (config, safetensors, tokenizer) in its
cache, once per file (keyed by its sha256), atomically and under a lock (`model_zoo/cache.py`),
with the tokenizer llama.cpp would use (`model_zoo/gguf_tokenizer.py`). Before the folder is
renamed into place it is checked against the file itself, with tables written here rather than
transformers' name mapping:

- every checkpoint tensor equals gguf's dequantization of its GGUF tensor after the
  architecture's documented transform, bit for bit, and every GGUF tensor is used (a tied
  output layer is the embedding);
- the config's shapes, norm epsilon, RoPE base and window are the metadata's;
- the tokenizer's vocabulary, BOS/EOS/padding ids and BOS rule are the metadata's.

An architecture or tokenizer without such a check is refused by name before anything loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compbench.core.io import cache_dir, sha256_file
from compbench.errors import CompbenchError
from compbench.model_zoo.cache import build_cached, build_in_staging, write_manifest
from compbench.model_zoo.gguf_tokenizer import (
    adds_bos,
    check_vocabulary,
    field_value,
    fix_converted,
    special_ids,
    spm_tokenizer,
    token_strings,
)
from compbench.model_zoo.tokenizers import expects_bos

# Bump when the materialized checkpoint of some file would change, so old caches are rebuilt.
MATERIALIZE_VERSION = 2

_LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
          "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
          "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def _unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's permutation of llama Q/K rows (its converter interleaves each head's two
    rotary halves for its own RoPE kernel)."""
    halves = rows.reshape(heads, rows.shape[0] // heads // 2, 2, *rows.shape[1:])
    return halves.swapaxes(1, 2).reshape(rows.shape)


def _llama_transform(name: str, weights: np.ndarray, meta: dict) -> np.ndarray:
    if name.endswith("attn_q.weight"):
        return _unpermute(weights, meta["attention.head_count"])
    if name.endswith("attn_k.weight"):
        return _unpermute(weights, meta["attention.head_count_kv"])
    return weights


def _no_transform(name: str, weights: np.ndarray, meta: dict) -> np.ndarray:
    return weights


def _gemma_transform(name: str, weights: np.ndarray, meta: dict) -> np.ndarray:
    """llama.cpp stores Gemma's RMSNorm weights as 1 + w (its kernel multiplies by the weight;
    Gemma's modules multiply by 1 + w)."""
    return weights - np.float32(1) if name.endswith("norm.weight") else weights


@dataclass(frozen=True)
class Architecture:
    """How a GGUF architecture maps onto its transformers model, as its llama.cpp converter wrote it."""

    layer_names: dict[str, str]  # GGUF tensor name in block i (without `blk.i.`) -> HF name in layer i
    transform: Callable[[str, np.ndarray, dict], np.ndarray]
    transform_doc: str  # what `transform` undoes, for the manifest

    def hf_name(self, name: str) -> str | None:
        top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
               "output.weight": "lm_head.weight"}
        if name in top:
            return top[name]
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in self.layer_names:
            return f"model.layers.{parts[1]}.{self.layer_names[parts[2]]}.{parts[3]}"
        return None


ARCHITECTURES = {
    "llama": Architecture({**_LAYER, "ffn_norm": "post_attention_layernorm"}, _llama_transform,
                          "Q/K rows un-permuted (llama.cpp's RoPE layout)"),
    "gemma3": Architecture({**_LAYER, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
                            "post_attention_norm": "post_attention_layernorm",
                            "ffn_norm": "pre_feedforward_layernorm",
                            "post_ffw_norm": "post_feedforward_layernorm"},
                           _gemma_transform, "RMSNorm weights stored as 1 + w: 1 subtracted"),
    # llama.cpp's Qwen2 converter keeps Q/K in the checkpoint's (NeoX RoPE) row order
    "qwen2": Architecture({**_LAYER, "ffn_norm": "post_attention_layernorm"}, _no_transform,
                          "none (Q/K rows in the checkpoint's NeoX RoPE order)"),
}


def check_gguf_path(path: Path) -> Path:
    """The file, resolved; a missing file or one that is not GGUF is one clear line."""
    if not path.is_file():
        raise CompbenchError(f"GGUF file {path} not found")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise CompbenchError(f"{path} is not a GGUF file (it does not start with the GGUF magic)")
    return path.resolve()


def read_gguf(path: Path):
    """gguf's reader over the file; a truncated or damaged file (its header or tensor table
    pointing past the end, a malformed field) is one line, not the library's traceback."""
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CompbenchError(f"{path} is not a readable GGUF file: truncated or damaged ({detail}); "
                             f"{path.stat().st_size} bytes on disk") from None


def _metadata(reader, architecture: str) -> dict:
    """The architecture's metadata (`<arch>.block_count` ... as `block_count` ...)."""
    prefix = architecture + "."
    return {key.removeprefix(prefix): field_value(reader, key) for key in reader.fields
            if key.startswith(prefix)}


def _architecture(path: Path, reader) -> tuple[str, Architecture]:
    """The file's architecture and its table; a refusal naming what has no verified conversion."""
    architecture = field_value(reader, "general.architecture")
    if architecture not in ARCHITECTURES:
        raise CompbenchError(
            f"{path.name}: GGUF architecture '{architecture}' has no verified conversion in compbench "
            f"(verified: {', '.join(sorted(ARCHITECTURES))}); convert it to a Hugging Face folder "
            "you have checked and pass that folder as --model")
    reason = check_vocabulary(reader)
    if reason:
        raise CompbenchError(f"{path.name}: {reason}; convert it to a Hugging Face folder you have "
                             "checked and pass that folder as --model")
    return architecture, ARCHITECTURES[architecture]


def materialize_gguf(path: Path) -> Path:
    """The verified checkpoint folder of a GGUF file, built on first use."""
    path = check_gguf_path(path)
    target = cache_dir() / "models" / f"{path.stem}-{sha256_file(path)[:12]}-v{MATERIALIZE_VERSION}"
    return build_cached(target, lambda t: build_in_staging(t, lambda s: _convert(path, s)),
                        "convert it again")


def gguf_identity(path: Path) -> dict:
    """What a GGUF source is: its name and sha256 and the materialization version. The verified
    checkpoint is built first (when absent), so a refused or damaged conversion is an error
    before any run starts."""
    path = check_gguf_path(path)
    materialize_gguf(path)
    return {"kind": "gguf-file", "file": path.name, "sha256": sha256_file(path),
            "materialize_version": MATERIALIZE_VERSION}


def _convert(source: Path, staging: Path) -> None:
    """Dequantize `source` into `staging` (weights, config, tokenizer), verify it, write the manifest."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reader = read_gguf(source)
    name, architecture = _architecture(source, reader)
    if field_value(reader, "tokenizer.ggml.model") == "llama":
        tokenizer = spm_tokenizer(reader)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        fix_converted(tokenizer, reader)
    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                  dtype=torch.float32)
    # Rebuilt from a clean config: the loaded one still says "quantized with gguf", which
    # transformers refuses to save.
    config = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config.pop(key, None)
    model = type(loaded)(type(loaded.config).from_dict(config))
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    for role in ("bos", "eos", "pad"):
        setattr(model.generation_config, f"{role}_token_id", getattr(tokenizer, f"{role}_token_id"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    del model
    verified = verify_checkpoint(staging, reader, name, architecture)
    write_manifest(staging, {"source": str(source), "source_sha256": sha256_file(source),
                             "version": MATERIALIZE_VERSION, "architecture": name, "verified": verified})


def verify_checkpoint(folder: Path, reader, name: str, architecture: Architecture) -> dict:
    """Check a converted folder against its GGUF (see the module doc); what was checked, or a
    CompbenchError naming the first difference."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    meta = _metadata(reader, name)
    pieces = token_strings(reader)
    tensors = _check_tensors(folder, reader, name, architecture, config, meta)
    checked = _check_config(folder, config, meta, len(pieces))
    return {"tensors": tensors, "transform": architecture.transform_doc, "config": checked,
            "tokenizer": _check_tokenizer(folder, reader, pieces)}


def _check_tensors(folder: Path, reader, name: str, architecture: Architecture, config, meta: dict) -> int:
    """Every GGUF tensor, dequantized and transformed, equals its checkpoint tensor bit for bit,
    and every checkpoint tensor is one of them; how many were compared."""
    from gguf.quants import dequantize
    from safetensors import safe_open

    files = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "np") as handle:
            files.update(dict.fromkeys(handle.keys(), file))
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    if bool(config.tie_word_embeddings) != tied:
        _fail(folder, f"tie_word_embeddings is {config.tie_word_embeddings}, but the GGUF "
                      f"{'has no' if tied else 'has its own'} output.weight")
    used = set()
    for tensor in reader.tensors:
        hf_name = architecture.hf_name(tensor.name)
        if hf_name is None:
            _fail(folder, f"GGUF tensor {tensor.name} has no place in the {name} table")
        if hf_name not in files:
            _fail(folder, f"GGUF tensor {tensor.name} ({hf_name}) is missing from the checkpoint")
        expected = architecture.transform(tensor.name, dequantize(tensor.data, tensor.tensor_type), meta)
        with safe_open(str(files[hf_name]), "np") as handle:
            actual = handle.get_tensor(hf_name)
        if actual.shape != expected.shape:
            _fail(folder, f"tensor {hf_name} has shape {actual.shape}; {tensor.name} dequantizes to "
                          f"{expected.shape}")
        if actual.dtype != np.float32 or not np.array_equal(actual, expected):
            worst = float(np.abs(actual.astype(np.float64) - expected).max())
            _fail(folder, f"tensor {hf_name} differs from gguf's dequantization of {tensor.name} "
                          f"(max |difference| {worst:.3g})")
        used.add(hf_name)
    unused = sorted(set(files) - used)
    if unused:
        _fail(folder, f"checkpoint tensors {', '.join(unused[:3])} come from no GGUF tensor")
    return len(used)


def _check_tokenizer(folder: Path, reader, pieces: list[str]) -> dict:
    """The saved tokenizer's vocabulary (`pieces`, the GGUF's), special ids and BOS rule are the
    metadata's."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.convert_ids_to_tokens(list(range(len(pieces)))) != pieces:
        _fail(folder, "the tokenizer's vocabulary differs from the GGUF's tokenizer.ggml.tokens")
    ids = special_ids(reader)
    for role, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
        if role in ids and getattr(tokenizer, attr) != ids[role]:
            _fail(folder, f"tokenizer {attr} is {getattr(tokenizer, attr)}, the GGUF says {ids[role]}")
    if expects_bos(tokenizer) != adds_bos(reader):
        _fail(folder, f"the tokenizer {'does not add' if adds_bos(reader) else 'adds'} a BOS token, "
                      "unlike the GGUF's add_bos_token")
    return {"vocabulary": len(pieces), **{f"{role}_token_id": i for role, i in ids.items()},
            "adds_bos": adds_bos(reader)}


def _check_config(folder: Path, config, meta: dict, vocabulary: int) -> list[str]:
    """The config's values against the metadata; the names of the keys compared."""
    theta = (config.rope_parameters.get("full_attention", config.rope_parameters)
             if isinstance(getattr(config, "rope_parameters", None), dict) else {})
    expected = {"block_count": config.num_hidden_layers, "embedding_length": config.hidden_size,
                "feed_forward_length": config.intermediate_size,
                "attention.head_count": config.num_attention_heads,
                "attention.head_count_kv": config.num_key_value_heads,
                "attention.layer_norm_rms_epsilon": config.rms_norm_eps,
                "context_length": config.max_position_embeddings,
                "rope.freq_base": theta.get("rope_theta"),
                "attention.key_length": getattr(config, "head_dim", None),
                "attention.sliding_window": getattr(config, "sliding_window", None)}
    checked = []
    for key, value in expected.items():
        if key not in meta:
            continue
        if value is None or not math.isclose(float(meta[key]), float(value), rel_tol=1e-6):
            _fail(folder, f"config has {value} where the GGUF's {key} is {meta[key]}")
        checked.append(key)
    if config.vocab_size != vocabulary:
        _fail(folder, f"config vocab_size {config.vocab_size} differs from the GGUF's {vocabulary} tokens")
    return [*checked, "vocab_size"]


def _fail(folder: Path, what: str):
    raise CompbenchError(f"the checkpoint converted from GGUF failed verification: {what}; it was not "
                         f"kept ({folder.name})")
