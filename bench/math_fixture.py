"""Save a MATH-500 run's generations as the fixture of the scoring test
(tests/tasks/test_math_scoring.py): the problem, what the model wrote, and which run wrote it.

    python bench/math_fixture.py results/qwen/<run>__<key>/samples_math500.jsonl \
        tests/tasks/fixtures/math500_generations.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", type=Path, help="a samples_math500.jsonl beside a results file")
    parser.add_argument("fixture", type=Path, help="the JSONL file to write")
    args = parser.parse_args()
    run = args.samples.parent.name
    lines = [json.loads(line) for line in args.samples.read_text(encoding="utf-8").splitlines()]
    rows = [{"problem": line["doc"]["problem"], "generation": line["resps"][0][0], "run": run}
            for line in sorted(lines, key=lambda line: line["doc_id"])]
    args.fixture.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                            encoding="utf-8")
    print(f"wrote {len(rows)} generations to {args.fixture}")


if __name__ == "__main__":
    main()
