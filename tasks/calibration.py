"""The calibration corpora's text, read from the data dir: what compressors get through
`CompressionContext.calibration_text` (they read no datasets themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compbench.core.io import DATA_DIR_ENV, data_dir, read_jsonl
from compbench.errors import CompbenchError


@dataclass(frozen=True)
class CalibrationSource:
    """Where a calibration corpus lives in the data dir, and which fields hold its text (joined
    by a newline: a problem and its solution read as one text)."""

    dataset: str  # folder under the data dir
    split: str
    text_fields: tuple[str, ...]


# One entry per name of compbench.compressors.calibration.CALIBRATION_SETS (a test checks).
SOURCES: dict[str, CalibrationSource] = {
    "wikitext2": CalibrationSource("wikitext-2-v1", "validation", ("text",)),
    "kasut_math": CalibrationSource("kasut_math", "train", ("question",)),
    "sst2": CalibrationSource("sst2", "train", ("sentence",)),
    "commonsense_qa": CalibrationSource("commonsense_qa", "train", ("question",)),
    "gsm8k": CalibrationSource("gsm8k", "train", ("question", "answer")),
    "math": CalibrationSource("math", "train", ("problem", "solution")),
}


def calibration_file(name: str) -> Path:
    """The JSONL file a calibration corpus is read from."""
    source = SOURCES[name]
    root = data_dir()
    if root is None:
        raise CompbenchError(
            f"no calibration data: calibration '{name}' reads {source.dataset}/{source.split}.jsonl "
            f"from the data dir; set ${DATA_DIR_ENV} or pass --data-dir"
        )
    path = root / source.dataset / f"{source.split}.jsonl"
    if not path.is_file():
        raise CompbenchError(f"no calibration data: {path} not found (calibration '{name}')")
    return path


def calibration_text(name: str) -> list[str]:
    """The corpus's texts; for KASUT only the training part of its fixed split."""
    source = SOURCES[name]
    path = calibration_file(name)
    rows = read_jsonl(path)
    for field in source.text_fields:
        missing = [i for i, row in enumerate(rows, 1) if field not in row]
        if missing:
            raise CompbenchError(f"{path}:{missing[0]}: no '{field}' field")
    if name == "kasut_math":
        from compbench.tasks.kasut import kasut_split

        rows = kasut_split(rows)[0]
    return ["\n".join(str(row[field]) for field in source.text_fields) for row in rows]


def wikitext_prompt_ids(tokenizer, tokens: int) -> list[int]:
    """The first `tokens` token ids of the WikiText-2 validation text (its non-empty lines, read
    200 at a time): real text for prompts that must be long (speed runs, KV-cache sizes)."""
    ids: list[int] = []
    lines = iter(line for line in calibration_text("wikitext2") if line.strip())
    while len(ids) < tokens:
        ids += tokenizer("".join(next(lines) for _ in range(200)), add_special_tokens=False)["input_ids"]
    return ids[:tokens]
