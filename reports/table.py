"""Markdown comparison tables from results JSON files (never from printed output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabulate import tabulate


@dataclass(frozen=True)
class Metric:
    """A task metric shown in tables: lm-eval's key, a column label, and its direction."""

    task: str
    key: str  # lm-eval's results key, e.g. "word_perplexity,none"
    label: str
    lower_is_better: bool


# The headline metric of each task; tasks not listed show every metric lm-eval reported.
HEADLINE = {
    "wikitext2_ppl": Metric("wikitext2_ppl", "word_perplexity,none", "wikitext2 word ppl", True),
    "wikitext2_chunked": Metric("wikitext2_chunked", "perplexity,none",
                                "wikitext2 ppl (GPTQ chunks)", True),
    **{task: Metric(task, "acc,none", f"{task} acc", False)
       for task in ("commonsense_qa", "cosmos_qa", "logiqa", "reclor", "e_kar", "sst2")},
}


def _metrics_of(results: list[dict[str, Any]]) -> list[Metric]:
    metrics: dict[tuple[str, str], Metric] = {}
    for result in results:
        for task, values in result["eval"]["tasks"].items():
            if task in HEADLINE:
                metrics[(task, HEADLINE[task].key)] = HEADLINE[task]
                continue
            for key, value in values.items():
                if isinstance(value, (int, float)) and "stderr" not in key and key != "alias":
                    name = key.split(",")[0]
                    lower = "perplexity" in name or name == "bits_per_byte"
                    metrics[(task, key)] = Metric(task, key, f"{task} {name}", lower)
    return list(metrics.values())


def _baseline_for(result: dict[str, Any], ok: list[dict[str, Any]], baseline_recipe: str):
    run = result["run"]
    for other in ok:
        o = other["run"]
        if (o["recipe"] == baseline_recipe and o["model"] == run["model"]
                and o["tasks"] == run["tasks"] and o["limit"] == run["limit"]):
            return other
    return None


def comparison_rows(results: list[dict[str, Any]], baseline_recipe: str = "fp32"):
    """Header and rows: model, recipe, size, ratio, each metric with its change vs the baseline."""
    ok = sorted((r for r in results if r.get("status") == "ok"),
                key=lambda r: (r["recipe"]["string"] != baseline_recipe, r["timing"]["started_at"]))
    metrics = _metrics_of(ok)
    header = ["model", "recipe", "size MB", "ratio"]
    for metric in metrics:
        header += [metric.label, "Δ vs " + baseline_recipe]
    header += ["compress s", "eval tok/s"]
    rows = []
    for result in ok:
        compression = result["compression"]
        row = [result["model"]["preset"], result["recipe"]["string"],
               f"{compression['size_mb']:.1f}", f"{compression['compression_ratio']:.2f}x"]
        baseline = _baseline_for(result, ok, baseline_recipe)
        for metric in metrics:
            value = result["eval"]["tasks"].get(metric.task, {}).get(metric.key)
            base = baseline and baseline["eval"]["tasks"].get(metric.task, {}).get(metric.key)
            row.append("" if value is None else f"{value:.2f}")
            row.append("" if value is None or not base else f"{(value - base) / base:+.1%}")
        tokens_per_s = result["timing"]["eval_tokens_per_s"]
        row += [f"{compression['seconds']:.1f}",
                "" if tokens_per_s is None else f"{tokens_per_s:.0f}"]
        rows.append(row)
    failed = [r for r in results if r.get("status") != "ok"]
    return header, rows, failed


def markdown_report(results: list[dict[str, Any]], baseline_recipe: str = "fp32") -> str:
    """The comparison table as markdown, with the protocol and any failed runs noted below."""
    header, rows, failed = comparison_rows(results, baseline_recipe)
    lines = ["# compbench report", "", tabulate(rows, header, tablefmt="github",
                                               disable_numparse=True), ""]
    limits = sorted({str(r["eval"]["limit"]) for r in results if r.get("status") == "ok"})
    lines.append(f"Document limit per task: {', '.join(limits)}. Size: bytes of every stored "
                 "tensor (quantization state included); ratio vs the uncompressed preset.")
    for result in failed:
        lines.append(f"- FAILED {result['run']['model']} {result['run']['recipe']}: "
                     f"{result.get('error')}")
    return "\n".join(lines) + "\n"
