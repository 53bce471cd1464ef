"""Calibration data for the methods that look at activations (GPTQ, Wanda, SparseGPT, sensitivity).

A calibration set is `nsamples` disjoint windows of `seqlen` tokens drawn with a fixed seed from
a text corpus in the data dir: by default the wikitext-2-v1 validation text (never the test
text that perplexity is reported on), or a task's training text (the math problems, SST-2, ...)
for in-domain calibration as the GPTQ study does. The choice is part of the recipe, so it is part
of a run's cache key and of its results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compbench.errors import CompbenchError


@dataclass(frozen=True)
class CalibrationSource:
    """Where a calibration corpus lives in the data dir, and which field holds its text."""

    dataset: str  # folder under the data dir
    split: str
    text_field: str


CALIBRATION_SETS: dict[str, CalibrationSource] = {
    "wikitext2": CalibrationSource("wikitext-2-v1", "validation", "text"),
    # the 90% training part of KASUT's labelled file; the 10% the task scores on is left out
    "kasut_math": CalibrationSource("kasut_math", "train", "question"),
    "sst2": CalibrationSource("sst2", "train", "sentence"),
    "commonsense_qa": CalibrationSource("commonsense_qa", "train", "question"),
}


@dataclass(frozen=True)
class Calibrated:
    """Calibration options shared by every method that needs data; mixed into their configs."""

    calibration: str = "wikitext2"  # corpus: one of CALIBRATION_SETS
    nsamples: int = 32  # number of token windows
    seqlen: int = 512  # tokens per window
    seed: int = 0  # which windows are drawn

    def __post_init__(self):
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


def _texts(name: str) -> list[str]:
    from compbench.tasks.data import data_dir, read_jsonl

    source = CALIBRATION_SETS[name]
    root = data_dir()
    if root is None:
        raise CompbenchError(
            f"no calibration data: calibration '{name}' reads {source.dataset}/{source.split}.jsonl "
            "from the data dir; set COMPBENCH_DATA_DIR or pass --data-dir"
        )
    path = root / source.dataset / f"{source.split}.jsonl"
    if not path.is_file():
        raise CompbenchError(f"no calibration data: {path} not found (calibration '{name}')")
    rows = read_jsonl(path)
    if name == "kasut_math":
        import datasets

        from compbench.tasks.choices import KASUT_SPLIT_SEED

        rows = list(datasets.Dataset.from_list(rows)
                    .train_test_split(test_size=0.1, seed=KASUT_SPLIT_SEED, shuffle=True)["train"])
    missing = [i for i, row in enumerate(rows, 1) if source.text_field not in row]
    if missing:
        raise CompbenchError(f"{path}:{missing[0]}: no '{source.text_field}' field")
    return [str(row[source.text_field]) for row in rows]


def calibration_ids(tokenizer, config: Calibrated) -> torch.Tensor:
    """`(nsamples, seqlen)` token ids: disjoint windows of the corpus, chosen with `config.seed`."""
    text = "\n\n".join(_texts(config.calibration))
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    windows = ids.numel() // config.seqlen
    if windows < config.nsamples:
        raise CompbenchError(
            f"calibration '{config.calibration}' holds {ids.numel()} tokens, {windows} windows of "
            f"{config.seqlen}: too few for nsamples={config.nsamples}; lower nsamples or seqlen"
        )
    generator = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(windows, generator=generator)[: config.nsamples].sort().values
    return torch.stack([ids[i * config.seqlen:(i + 1) * config.seqlen] for i in chosen.tolist()])


def calibration_loader(tokenizer, config: Calibrated):
    """The windows as a DataLoader of single-row `{input_ids, attention_mask}` batches (llm-compressor)."""
    from torch.utils.data import DataLoader

    ids = calibration_ids(tokenizer, config)
    rows = [{"input_ids": row, "attention_mask": torch.ones_like(row)} for row in ids]
    return DataLoader(rows, batch_size=1)
