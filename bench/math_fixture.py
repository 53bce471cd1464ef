"""Save MATH-500 runs' generations as the fixture of the scoring test
(tests/tasks/test_math_scoring.py): the problem, what the model wrote, and which run wrote it.

    python bench/math_fixture.py results/qwen/<run>__<key>/samples_math500.jsonl [more …] \
        --output tests/tasks/fixtures/math500_generations.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", type=Path, nargs="+",
                        help="samples_math500.jsonl files beside results files")
    parser.add_argument("--output", type=Path, required=True, help="the JSONL file to write")
    args = parser.parse_args()
    rows = []
    for samples in args.samples:
        lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
        rows += [{"problem": line["doc"]["problem"], "generation": line["resps"][0][0],
                  "run": samples.parent.name}
                 for line in sorted(lines, key=lambda line: line["doc_id"])]
    args.output.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                            encoding="utf-8")
    print(f"wrote {len(rows)} generations to {args.output}")


if __name__ == "__main__":
    main()
