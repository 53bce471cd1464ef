"""How many of a sweep's generated answers ran into the task's token budget (`max_gen_toks`)
rather than ending on their own: a cut answer has no final answer to check, so at a tight budget
accuracy measures verbosity as much as reasoning. Reads each run's samples logs, re-tokenizes
every answer with the model's tokenizer, and counts an answer as cut when its length is within
2 tokens of the budget (decoding and re-encoding can move the count by a token).

    python bench/answers_cut.py results/math_reasoning
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SLACK_TOKENS = 2


def main() -> None:
    from transformers import AutoTokenizer

    from compbench.model_zoo.presets import get_preset
    from compbench.model_zoo.sources import resolve_source
    from compbench.records.index import load_results
    from compbench.reports.table import latest

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a results folder (a sweep's output)")
    args = parser.parse_args()
    tokenizers = {}
    print("| model | recipe | task | answers | cut at the budget | budget | median answer tokens |")
    print("|---|---|---|---|---|---|---|")
    for record in latest(load_results(args.folder))[0]:
        if record.preset not in tokenizers:
            preset = get_preset(record.preset)
            tokenizers[record.preset] = AutoTokenizer.from_pretrained(resolve_source(preset),
                                                                      revision=preset.revision)
        tokenizer = tokenizers[record.preset]
        for task, entry in sorted(((record.generation or {}).get("tasks") or {}).items()):
            if not entry.get("samples"):
                continue
            budget = entry["generation_kwargs"]["max_gen_toks"]
            lines = [json.loads(line) for line in
                     (args.folder / entry["samples"]).read_text(encoding="utf-8").splitlines()]
            answers = {line["doc_id"]: line["resps"][0][0] for line in lines}  # one per filter
            lengths = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in answers.values()]
            cut = sum(length >= budget - SLACK_TOKENS for length in lengths)
            print(f"| {record.preset} | {record.recipe} | {task} | {len(lengths)} | {cut} "
                  f"({cut / len(lengths):.0%}) | {budget} | {statistics.median(lengths):.0f} |")


if __name__ == "__main__":
    main()
