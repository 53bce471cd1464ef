"""Where one decoded token's time goes, per recipe: torch's profiler over greedy decoding, the
time split into the linear layers' matmuls (by kernel), the LM head, every other operator, and
the time outside any operator (Python, `generate`'s bookkeeping).

    python bench/decode_profile.py --model smollm2-135m --recipe fp32 --recipe int4
    python bench/decode_profile.py --recipe int4 --tokens 64 --output bench/results/profile.md
    python bench/decode_profile.py --recipe int4 --compile   # also as `compbench speed --compile` runs it

It answers "why is this recipe far from its bandwidth limit": a token bound by bytes spends
its time in the matmuls; one bound by per-operation cost spends it in small operators and
outside them. Run nothing else on the machine meanwhile. Needs the data dir (the prompt is
WikiText-2 text, as `compbench speed` uses).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tabulate import tabulate

MATMULS = {"aten::_weight_int4pack_mm_for_cpu": "int4 kernel", "aten::_weight_int8pack_mm": "int8 kernel",
           "aten::addmm": "dense matmul", "aten::mm": "dense matmul", "aten::linear": None,
           "aten::matmul": None}


def profile_decode(model, prompt: list[int], tokens: int, compiled: bool = False
                   ) -> tuple[dict[str, float], list[tuple[str, float, float]]]:
    """Milliseconds per decoded token: wall, each matmul kind, the LM head, other operators,
    outside operators (wall minus every top-level operator's time). `compiled`: decoding through
    `compbench speed --compile`'s compiled one-token steps, compiled before the profile; their
    fused kernels count as other operators, and the LM head is not timed (a hook in the
    compiled graph would break it). Also every operator's self time and calls a token, most first."""
    from torch.profiler import ProfilerActivity, profile

    from compbench.evaluation.speed import CompiledSubject, ModelSubject

    subject = CompiledSubject(model) if compiled else ModelSubject(model)
    if compiled:
        subject.decode(prompt, tokens)  # compiles the profiled shape
    else:
        subject.decode(prompt[:32], 4)  # warm-up
    head = model.get_output_embeddings()
    marks: list[float] = []
    hooks = [] if compiled else [
        head.register_forward_pre_hook(lambda *_: marks.append(time.perf_counter())),
        head.register_forward_hook(lambda *_: marks.append(time.perf_counter()))]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        subject.decode(prompt, tokens)
        wall = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    head_s = sum(marks[i + 1] - marks[i] for i in range(0, len(marks) - 1, 2))
    by_kind: dict[str, float] = {}
    other = 0.0
    for event in prof.key_averages():
        kind = MATMULS.get(event.key, "other operators")
        if kind is None:  # a wrapper: its time is its children's
            continue
        seconds = event.self_cpu_time_total / 1e6
        if kind == "other operators":
            other += seconds
        else:
            by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    operators = other + sum(by_kind.values())
    per_token = 1000 / (tokens + 1)  # the prompt's forward counts as one step too
    head = {} if compiled else {"of which LM head": head_s * per_token}
    ranked = sorted(((e.key, e.self_cpu_time_total / 1e6 * per_token, e.count / (tokens + 1))
                     for e in prof.key_averages()), key=lambda op: -op[1])
    return {"wall": wall * per_token, **{k: v * per_token for k, v in by_kind.items()},
            **head, "other operators": other * per_token,
            "outside operators": max(wall - operators, 0.0) * per_token}, ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--recipe", action="append", required=True)
    parser.add_argument("--tokens", type=int, default=32, help="tokens decoded under the profiler")
    parser.add_argument("--prompt", type=int, default=128, help="prompt length in tokens")
    parser.add_argument("--output", default=None, help="write the table here (Markdown) as well")
    parser.add_argument("--top", type=int, default=0, help="also list each row's N costliest operators")
    parser.add_argument("--compile", action="store_true",
                        help="profile each recipe a second time through compiled one-token steps")
    args = parser.parse_args()

    from compbench.artifacts.build import build
    from compbench.cli.main import quiet_libraries
    from compbench.compressors.llmc import decompress_for_inference
    from compbench.evaluation.speed import SpeedSettings
    from compbench.evaluation.speed_run import prompt_ids

    quiet_libraries()
    measured, ranked = {}, {}
    for recipe in args.recipe:
        artifact = build(args.model, recipe)
        decompress_for_inference(artifact.model)
        settings = SpeedSettings(prompt_lengths=(args.prompt,), batch_rows=1)
        prompts, _ = prompt_ids(artifact.tokenizer, settings)
        measured[recipe], ranked[recipe] = profile_decode(artifact.model, prompts[args.prompt], args.tokens)
        if args.compile:
            name = f"{recipe} compiled"
            measured[name], ranked[name] = profile_decode(artifact.model, prompts[args.prompt], args.tokens,
                                                          compiled=True)
        del artifact
    seen = {key for times in measured.values() for key in times}
    order = ["wall", "int4 kernel", "int8 kernel", "dense matmul", "of which LM head", "other operators",
             "outside operators"]
    header = ["recipe", *(key for key in order if key in seen)]
    untimed = "n/a"  # the LM head of a compiled row
    rows = [[recipe, *(f"{times.get(k, 0.0):.1f}" if k in times or k != "of which LM head" else untimed
                       for k in header[1:])] for recipe, times in measured.items()]
    text = (f"ms per decoded token, {args.model}, {args.tokens} tokens after a {args.prompt}-token "
            f"prompt, {torch.get_num_threads()} threads (torch profiler; the LM head's time is "
            "also inside the matmul columns)\n\n" + tabulate(rows, header, tablefmt="github"))
    for name, operators in ranked.items() if args.top else ():
        top = [[op, f"{ms:.2f}", f"{calls:.0f}"] for op, ms, calls in operators[:args.top]]
        text += f"\n\n{name}: the {args.top} costliest operators\n\n" + tabulate(
            top, ["operator", "self ms a token", "calls a token"], tablefmt="github")
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
