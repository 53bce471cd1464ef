"""BERT-style encoders with attention heads removed: shrink a layer's attention, and reload one.

transformers 4 recorded removed heads in the config (`pruned_heads`, {layer: [heads]}) and
rebuilt the smaller attention in `from_pretrained`; transformers 5 dropped that (BERT's head
size is now always hidden_size / num_attention_heads), so stock `from_pretrained` of such a
folder stops on the size mismatch. compbench writes the same `pruned_heads` field, which an
older transformers still honours, and `load_head_pruned` rebuilds the attention itself: the
stock model from the config, its attention shrunk to the recorded heads, then the saved
weights loaded strictly (every tensor must fit).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compbench.errors import CompbenchError

WRITERS = ("self.query", "self.key", "self.value")  # paths inside a layer's `attention` module
READER = "output.dense"


def sliced_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping the given output rows (dim 0) or input columns (dim 1)."""
    weight = linear.weight.data.index_select(dim, keep).clone()
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    new = nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias:
        bias_data = linear.bias.data if dim == 1 else linear.bias.data.index_select(0, keep)
        new.bias.data.copy_(bias_data)
    return new


def keep_heads_(attention: nn.Module, kept: list[int], head_dim: int) -> None:
    """Keep only heads `kept` of a BERT attention module (query/key/value rows, output columns)."""
    rows = torch.tensor([h * head_dim + i for h in kept for i in range(head_dim)],
                        device=attention.self.query.weight.device)
    for path in WRITERS:
        parent, _, name = path.rpartition(".")
        setattr(attention.get_submodule(parent), name,
                sliced_linear(attention.get_submodule(path), rows, 0))
    attention.output.dense = sliced_linear(attention.output.dense, rows, 1)
    attention.self.num_attention_heads = len(kept)
    attention.self.all_head_size = len(kept) * head_dim


def encoder_attentions(model: nn.Module) -> list[nn.Module]:
    """Each encoder layer's `attention` module (BertAttention, RobertaAttention, …), in order."""
    found = [m for name, m in model.named_modules()
             if name.endswith(".attention") and hasattr(m, "self") and hasattr(m, "output")]
    if not found:
        raise CompbenchError(f"{type(model).__name__} has no BERT-style attention modules "
                             "(attention.self.query/key/value, attention.output.dense)")
    return found


def head_dim(config) -> int:
    return config.hidden_size // config.num_attention_heads


def apply_pruned_heads_(model: nn.Module, pruned_heads: dict) -> None:
    """Shrink each layer's attention to the heads its config record did not remove."""
    heads = model.config.num_attention_heads
    for index, attention in enumerate(encoder_attentions(model)):
        removed = set(pruned_heads.get(str(index), pruned_heads.get(index, [])))
        if removed:
            keep_heads_(attention, [h for h in range(heads) if h not in removed], head_dim(model.config))


def pruned_heads_of(source: str) -> dict:
    """The `pruned_heads` record of a local folder's config.json ({} if none, or a hub id)."""
    import json

    config = Path(source) / "config.json"
    if not config.is_file():
        return {}
    return json.loads(config.read_text(encoding="utf-8")).get("pruned_heads") or {}


def load_head_pruned(auto, source: str, dtype: torch.dtype | str, **config_kwargs) -> nn.Module:
    """A folder written by `save_pretrained` from a head-pruned model, loaded by rebuilding the
    recorded attention shapes (see the module docstring)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, **config_kwargs)
    if dtype == "auto":  # the dtype it was saved in
        dtype = getattr(torch, str(getattr(config, "dtype", None) or "float32").removeprefix("torch."))
    model = auto.from_config(config, dtype=dtype)
    apply_pruned_heads_(model, config.pruned_heads)
    state = {}
    for shard in sorted(Path(source).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        raise CompbenchError(f"{source} has no *.safetensors weights to load")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CompbenchError(f"{source}: the weights do not fit the head-pruned architecture its "
                             f"config records: {str(exc).splitlines()[-1].strip()}") from None
    tied = set(getattr(model, "_tied_weights_keys", None) or ())  # saved once, under the source
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise CompbenchError(f"{source}: the weights do not fit the head-pruned architecture its "
                             f"config records (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    return model.to(dtype)
