"""Write a report: its tables as markdown (with the plots beside it, linked), CSV or JSON."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tabulate import tabulate

from compbench.core.io import write_json_atomic, write_text_atomic
from compbench.records.index import REPORT_MARK
from compbench.records.record import RunRecord
from compbench.reports import plots, solved, speed
from compbench.reports.table import Table, build_tables, columns, groups, pruning_grid

FORMATS = ("md", "csv", "json")


def markdown(tables: list[Table], records: list[RunRecord], plot_paths: list[Path], folder: Path,
             title: str = "compbench report", baseline: str = "fp32") -> str:
    lines = [f"# {title}", ""]
    warnings = dict.fromkeys(r.baseline_warning for r in records if r.ok and r.baseline_warning)
    lines += [f"> **WARNING: broken baseline.** {warning}." for warning in warnings]
    lines += [""] if warnings else []
    for table in tables:
        lines += [f"## {table.title}", "",
                  tabulate(table.rows, table.header, tablefmt="github", disable_numparse=True), ""]
        lines += [*table.notes, ""] if table.notes else []
    limits = sorted({"all documents" if r.limit is None else str(r.limit) for r in records if r.ok})
    if any("=" in text for text in limits):
        limits.append("a task not named: all documents")
    lines.append(f"Document limit per task: {'; '.join(limits)}. Size: bytes of every "
                 "stored tensor (quantization state included); ratio vs the uncompressed preset.")
    for record in records:
        if not record.ok:
            lines.append(f"- FAILED {record.preset} {record.recipe}: {record.error}")
    broken = solved.markdown_section(records, baseline)
    lines += ["", *broken] if broken else []
    if plot_paths:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(folder) if p.is_relative_to(folder) else p})"
                  for p in plot_paths]
    return "\n".join(lines) + "\n"


def make_plots(records: list[RunRecord], baseline: str, folder: Path) -> list[Path]:
    """Every plot the records support, written into `folder`."""
    all_groups = groups(records)
    cols = columns([g.first for g in all_groups])
    made = []
    for column in cols:
        made.append(plots.metric_vs_sparsity(all_groups, column, baseline,
                                             folder / f"sparsity_{plots.slug(column.label)}.png"))
    grid, _ = pruning_grid(all_groups, baseline)
    for method in grid or {}:
        made.append(plots.tasks_vs_sparsity(all_groups, cols, baseline, method,
                                            folder / f"tasks_{plots.slug(method)}.png"))
    for column in cols:
        made.append(plots.size_vs_metric(all_groups, column, folder / f"size_{plots.slug(column.label)}.png"))
    made.append(plots.bits_plot(all_groups, folder / "bits.png"))
    made += plots.structured_plots(all_groups, cols, baseline, folder)
    made += plots.breakdown_plots(all_groups, baseline, folder)
    return [p for p in made if p is not None]


def write_report(records: list[RunRecord], output: Path, baseline: str = "fp32", fmt: str = "md",
                 only: tuple[str, ...] | None = None, title: str = "compbench report",
                 with_plots: bool = True, speed_runs: list[dict] = ()) -> tuple[str, list[Path]]:
    """Write the report to `output` (a markdown/JSON file, or for CSV a file per table named
    after it); returns the text printed for a person and every file written. A markdown report
    ends with a section per `compbench speed` run (`speed_runs`), with its plot."""
    tables = build_tables(records, baseline, only)
    written: list[Path] = []
    if fmt == "json":
        write_json_atomic(output, {REPORT_MARK: 1, "title": title, "baseline": baseline, "tables": [
            {"name": t.name, "title": t.title, "header": t.header, "rows": t.rows, "notes": t.notes}
            for t in tables]})
        written.append(output)
    elif fmt == "csv":
        for i, table in enumerate(tables):
            path = output.with_name(f"{output.stem}_{table.name}_{i}.csv") if len(tables) > 1 else output
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(table.header)
            writer.writerows(table.rows)
            write_text_atomic(path, buffer.getvalue())
            written.append(path)
    plot_paths = make_plots(records, baseline, output.parent) if with_plots and fmt == "md" else []
    text = markdown(tables, records, plot_paths, output.parent, title, baseline)
    if fmt == "md":
        for run in speed_runs:
            plot = plots.speed_plot(run, output.parent / f"speed_{plots.slug(run['model'])}.png") \
                if with_plots else None
            text += "\n" + speed.render(run, heading="##") + (f"\n![speed]({plot.name})\n" if plot else "")
            plot_paths += [plot] if plot else []
        write_text_atomic(output, text)
        written = [output, *plot_paths]
    return text, written
