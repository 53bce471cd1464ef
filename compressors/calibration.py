"""Calibration data for the methods that look at activations (GPTQ, Wanda, SparseGPT, sensitivity).

A calibration set is `nsamples` disjoint windows of `seqlen` tokens drawn with a fixed seed from
a named text corpus: by default the wikitext-2-v1 validation text (never the test text that
perplexity is reported on), or a task's training text (the math problems, SST-2, ...) for
in-domain calibration as the GPTQ study does. The choice is part of the recipe, so it is part
of a compressed model's identity and of its results.

`collect_inputs` is the one pass that hands every target layer's inputs over those windows to
a method's own statistic (AWQ's Gram matrices, OWL's input norms).

Compressors do not read datasets: the corpus text comes from the `calibration_text` function
in the `CompressionContext` (compbench's is `compbench.tasks.calibration.calibration_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn
from tqdm import tqdm

from compbench.compressors.registry import CompressionContext
from compbench.errors import CompbenchError

# The corpora a recipe may name, and what each holds (the text itself comes from the context).
CALIBRATION_SETS: dict[str, str] = {
    "wikitext2": "wikitext-2-v1 validation text",
    "kasut_math": "KASUT math problems, the 90% training part (the scored 10% left out)",
    "sst2": "SST-2 training sentences",
    "commonsense_qa": "CommonsenseQA training questions",
    "gsm8k": "GSM8K training problems with their worked solutions",
    "math": "MATH training problems with their worked solutions",
}


@dataclass(frozen=True)
class Calibrated:
    """Calibration options shared by every method that needs data; mixed into their configs."""

    calibration: str = "wikitext2"  # corpus: one of CALIBRATION_SETS
    nsamples: int = 32  # number of token windows
    seqlen: int = 512  # tokens per window
    seed: int = 0  # which windows are drawn

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent:
            parent()
        if self.calibration not in CALIBRATION_SETS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_SETS)}, "
                             f"got '{self.calibration}'")
        if self.nsamples < 1:
            raise ValueError(f"nsamples must be >= 1, got {self.nsamples}")
        if not 16 <= self.seqlen <= 8192:
            raise ValueError(f"seqlen must be in [16, 8192], got {self.seqlen}")

    def calibration_record(self) -> dict:
        """What the results JSON stores under `calibration`."""
        return {"dataset": self.calibration, "nsamples": self.nsamples, "seqlen": self.seqlen,
                "seed": self.seed}


CALIBRATION_FIELDS = tuple(f.name for f in fields(Calibrated))


def calibration_ids(context: CompressionContext, config: Calibrated) -> torch.Tensor:
    """`(nsamples, seqlen)` token ids: disjoint windows of the corpus, chosen with `config.seed`."""
    if context.tokenizer is None or context.calibration_text is None:
        raise CompbenchError("calibration needs the model's tokenizer and a calibration_text "
                             "function in the CompressionContext")
    text = "\n\n".join(context.calibration_text(config.calibration))
    ids = context.tokenizer(text, return_tensors="pt").input_ids[0]
    windows = ids.numel() // config.seqlen
    if windows < config.nsamples:
        raise CompbenchError(
            f"calibration '{config.calibration}' holds {ids.numel()} tokens, {windows} windows of "
            f"{config.seqlen}: too few for nsamples={config.nsamples}; lower nsamples or seqlen"
        )
    generator = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(windows, generator=generator)[: config.nsamples].sort().values
    return torch.stack([ids[i * config.seqlen:(i + 1) * config.seqlen] for i in chosen.tolist()])


def calibration_loader(context: CompressionContext, config: Calibrated):
    """The windows as a DataLoader of single-row `{input_ids, attention_mask}` batches (llm-compressor)."""
    from torch.utils.data import DataLoader

    ids = calibration_ids(context, config)
    rows = [{"input_ids": row, "attention_mask": torch.ones_like(row)} for row in ids]
    return DataLoader(rows, batch_size=1)


def collect_inputs(model: nn.Module, layers: dict[str, nn.Module], ids: torch.Tensor,
                   accumulate: Callable[[str, torch.Tensor], None], desc: str) -> None:
    """Run the calibration rows through the model, handing each layer's input, as float32
    (tokens x features), to `accumulate(name, x)`: the one pass behind AWQ's and OWL's
    statistics. The hooks are removed however the pass ends."""
    def hook(name):
        def on_input(_module, args):
            x = args[0].detach()
            accumulate(name, x.reshape(-1, x.shape[-1]).float())
        return on_input

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers.items()]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for row in tqdm(ids, desc=desc, leave=False):
                model(row[None].to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
