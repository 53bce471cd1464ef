"""A speed run's table, from its file alone: per subject the median and range of each figure over
the repetitions, against the first recipe, beside the memory-bandwidth limit; the line that says
how far compbench's fastest row is from llama.cpp's Q4_0. Its plot: `plots.speed_plot`."""

from __future__ import annotations

import statistics

YARDSTICK = "llama.cpp Q4_0"


def _figures(run: dict, subject: str, key: str) -> list[float]:
    return [r[key] for r in run["repetitions"] if r["subject"] == subject and r.get(key) is not None]


def _ttft(run: dict, subject: str, length: int) -> list[float]:
    return [r["time_to_first_token_s"][str(length)] for r in run["repetitions"] if r["subject"] == subject]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def decode_medians(run: dict) -> dict[str, float | None]:
    """Each subject's median batch-1 decode tokens/s (None before any measurement)."""
    return {name: _median(_figures(run, name, "decode_tokens_per_s")) for name in run["subjects"]}


def _spread(values: list[float], digits: int) -> str:
    """median [min-max]; one value alone; n/a for none."""
    if not values:
        return "n/a"
    middle = f"{statistics.median(values):.{digits}f}"
    return middle if len(values) == 1 else f"{middle} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def limit_tokens_per_s(run: dict, subject: str) -> float:
    """The bandwidth limit of batch-1 decoding: read bandwidth over the bytes a token reads."""
    return run["read_bandwidth_gb_per_s"] * 1e9 / run["subjects"][subject]["bytes_read_per_token"]


def speed_rows(run: dict) -> tuple[list[str], list[list[str]]]:
    """The speed table: a row per subject in the run's order, compbench's recipes first."""
    lengths = run["settings"]["prompt_lengths"]
    rows_label = run["settings"]["batch_rows"]
    header = ["subject", "kernels", "MB read/token", "decode tok/s", "x first",
              "limit tok/s", "% of limit", *[f"TTFT {n} s" for n in lengths], "prefill tok/s",
              f"batch-{rows_label} tok/s", "model RSS MB", "working MB"]
    subjects = list(run["subjects"])
    base = _median(_figures(run, subjects[0], "decode_tokens_per_s")) if subjects else None
    rows = []
    for name in subjects:
        info = run["subjects"][name]
        decode = _figures(run, name, "decode_tokens_per_s")
        limit = limit_tokens_per_s(run, name)
        median = _median(decode)
        kernels = ", ".join([f"{kind} x{count}" if count > 1 else kind
                             for kind, count in info["kernels"].items()]
                            + (["torch.compile"] if info.get("compiled") else []))
        rss = info.get("model_rss_mb")
        rows.append([
            name, kernels, f"{info['bytes_read_per_token'] / 2**20:.1f}", _spread(decode, 1),
            f"{median / base:.2f}x" if median and base else "n/a", f"{limit:.0f}",
            f"{100 * median / limit:.0f}%" if median else "n/a",
            *[_spread(_ttft(run, name, n), 3) for n in lengths],
            _spread(_figures(run, name, "prefill_tokens_per_s"), 0),
            _spread(_figures(run, name, "batch_tokens_per_s"), 1),
            f"{rss:.0f}" if rss is not None else "n/a",
            _spread(_figures(run, name, "working_memory_mb"), 0)])
    return header, rows


def yardstick_line(run: dict) -> str:
    """How compbench's fastest decoding compares with llama.cpp's Q4_0 of the same model."""
    if run.get("llama_cpp"):
        return f"No llama.cpp rows: {run['llama_cpp']}."
    medians = decode_medians(run)
    ours = {name: value for name, value in medians.items()
            if run["subjects"][name]["kind"] == "compbench" and value}
    theirs = medians.get(YARDSTICK)
    if not ours or not theirs:
        return ""
    fastest = max(ours, key=ours.get)
    return (f"compbench's fastest decoding ({fastest}, {ours[fastest]:.1f} tok/s) is "
            f"{ours[fastest] / theirs:.2f}x {YARDSTICK}'s ({theirs:.1f} tok/s) on the same model.")


def _probed(run: dict) -> str:
    """How the run's bandwidth was measured (runs before the repeated probe have one)."""
    probes = run.get("read_bandwidth_probes_gb_per_s") or []
    if len(probes) < 2:
        return "measured at the start"
    return (f"the best of {len(probes)} probes, at the start and after each repetition: "
            f"{min(probes):.1f}-{max(probes):.1f}")


def render(run: dict, heading: str = "#") -> str:
    """The run as Markdown under a `heading` of that level: what was measured, the table, the
    yardstick line."""
    from tabulate import tabulate

    settings = run["settings"]
    header, rows = speed_rows(run)
    done = len(run["repetitions"])
    lines = [
        f"{heading} Speed: {run['model']}",
        "",
        f"Batch-1 greedy decode of {settings['new_tokens']} tokens after a {min(settings['prompt_lengths'])}-"
        f"token prompt, time to first token (TTFT) per prompt length, prefill at the longest, and "
        f"{settings['batch_rows']} rows generating {settings['new_tokens']} tokens each; "
        f"{settings['repetitions']} repetitions interleaved across the rows ({done} measurements), "
        f"median [min-max]; {settings['threads']} threads. The limit is the machine's read "
        f"bandwidth ({run['read_bandwidth_gb_per_s']:.1f} GB/s, {_probed(run)}) over the "
        "weight bytes one token reads. x first: decode speed against the first row. Model RSS: "
        "the process's memory growth when the row was built; working: its peak while generating "
        "above its memory before (every row lives in one process, so both are approximate).",
        "",
        tabulate(rows, header, tablefmt="github", disable_numparse=True),
        "",
        yardstick_line(run),
    ]
    return "\n".join(lines).rstrip() + "\n"
