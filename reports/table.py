"""Markdown comparison tables from results records (never from printed output)."""

from __future__ import annotations

from dataclasses import dataclass

from tabulate import tabulate

from compbench.reports.record import RunRecord


@dataclass(frozen=True)
class Column:
    """A task metric shown in tables: lm-eval's key, a column label, and lm-eval's direction."""

    task: str
    key: str  # lm-eval's results key, e.g. "word_perplexity,none"
    label: str
    higher_is_better: bool | None


def _columns(records: list[RunRecord]) -> list[Column]:
    """Each task's headline metric (its YAML metadata), or all its metrics when it names none."""
    columns: dict[tuple[str, str], Column] = {}
    for record in records:
        for task, result in record.tasks.items():
            for key, metric in result.shown().items():
                label = (result.label if key == result.headline and result.label
                         else f"{task} {key.split(',')[0]}")
                columns[(task, key)] = Column(task, key, label, metric.higher_is_better)
    return list(columns.values())


def find_baseline(record: RunRecord, records: list[RunRecord], baseline_recipe: str) -> RunRecord | None:
    """The baseline run for `record`: the baseline recipe on the same model, tasks and limit."""
    for other in records:
        if (other.recipe == baseline_recipe and other.preset == record.preset
                and other.task_names == record.task_names and other.limit == record.limit):
            return other
    return None


def comparison_rows(records: list[RunRecord], baseline_recipe: str = "fp32"):
    """Header and rows: model, recipe, size, ratio, each metric with its change vs the baseline."""
    ok = sorted((r for r in records if r.ok),
                key=lambda r: (r.recipe != baseline_recipe, r.timing.started_at))
    columns = _columns(ok)
    header = ["model", "recipe", "size MB", "ratio"]
    for column in columns:
        header += [column.label, "Δ vs " + baseline_recipe]
    header += ["compress s", "eval tok/s"]
    rows = []
    for record in ok:
        compression = record.compression
        row = [record.preset, record.recipe, f"{compression.size_mb:.1f}",
               f"{compression.compression_ratio:.2f}x"]
        baseline = find_baseline(record, ok, baseline_recipe)
        for column in columns:
            metric = record.metric(column.task, column.key)
            value = None if metric is None else metric.value
            base_metric = baseline and baseline.metric(column.task, column.key)
            base = base_metric.value if base_metric else None
            row.append("" if value is None else f"{value:.2f}")
            row.append("" if value is None or not base else f"{(value - base) / base:+.1%}")
        tokens_per_s = record.timing.eval_tokens_per_s
        row += [f"{compression.seconds:.1f}", "" if tokens_per_s is None else f"{tokens_per_s:.0f}"]
        rows.append(row)
    failed = [r for r in records if not r.ok]
    return header, rows, failed


def markdown_report(records: list[RunRecord], baseline_recipe: str = "fp32") -> str:
    """The comparison table as markdown, with the protocol and any failed runs noted below."""
    header, rows, failed = comparison_rows(records, baseline_recipe)
    lines = ["# compbench report", "", tabulate(rows, header, tablefmt="github",
                                               disable_numparse=True), ""]
    limits = sorted({str(r.limit) for r in records if r.ok})
    lines.append(f"Document limit per task: {', '.join(limits)}. Size: bytes of every stored "
                 "tensor (quantization state included); ratio vs the uncompressed preset.")
    for record in failed:
        lines.append(f"- FAILED {record.preset} {record.recipe}: {record.error}")
    return "\n".join(lines) + "\n"
