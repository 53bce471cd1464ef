"""compbench's MATH scoring against lm-eval's own minerva_math, sample by sample, on real model
generations (fixtures/math500_generations.jsonl, made by bench/math_fixture.py from a MATH-500
run): compbench reads the local MATH-500 rows into minerva_math's document shape and scores
through `math_problems.results_by_subject`; the reference is minerva_math's `process_docs` over
the hub's row shape and its `process_results`."""

import json
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "math500_generations.jsonl"


def test_compbench_scores_every_saved_generation_as_minerva_math_does(data_dir):
    import datasets
    from lm_eval.tasks.minerva_math import utils as minerva

    from compbench.tasks.math_problems import load_math, results_by_subject

    saved = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert len(saved) >= 50
    ours = {row["problem"]: row for row in load_math(
        "HuggingFaceH4/MATH-500", "math", ["test500"], split_names={"test500": "test"})["test"]}
    raw = {row["problem"]: row for row in map(json.loads, (data_dir / "math" / "test500.jsonl")
                                               .read_text(encoding="utf-8").splitlines())}
    hub_shape = [{"problem": raw[s["problem"]]["problem"], "solution": raw[s["problem"]]["solution"],
                  "level": f"Level {raw[s['problem']]['level']}", "type": raw[s["problem"]]["subject"]}
                 for s in saved]
    theirs = minerva.process_docs(datasets.Dataset.from_list(hub_shape))
    outcomes = {"exact_match": set(), "math_verify": set()}
    for sample, reference_doc in zip(saved, theirs, strict=True):
        doc = ours[sample["problem"]]
        assert doc["answer"] == reference_doc["answer"], sample["problem"]
        reference = minerva.process_results(reference_doc, [sample["generation"]])
        scores = results_by_subject(doc, [sample["generation"]])
        assert {key: scores[key] for key in reference} == reference, sample["problem"]
        for key in outcomes:
            outcomes[key].add(reference[key])
    # the generations hold right and wrong answers under both checks, so agreement means something
    assert outcomes == {"exact_match": {0, 1}, "math_verify": {0, 1}}
