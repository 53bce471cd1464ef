"""The report's plots (matplotlib, Agg): perplexity vs sparsity per method, accuracy/F1 vs
sparsity per task, size vs metric with the Pareto front, size and speed per bit-width, metric
and size vs the heads and FFN width that structured pruning kept, a task's metric by subject
or level as grouped bars (one bar a run), a speed run's decode speed against the bytes a token
reads. Each
function writes one PNG atomically and returns its path, or None when the data has no such shape.
"""

from __future__ import annotations

import re
from pathlib import Path

from compbench.core.io import atomic_path
from compbench.reports.table import (
    Column,
    Group,
    bits_point,
    breakdown_runs,
    breakdowns,
    part_column,
    pruning_grid,
    series_label,
    structured_points,
)


def _colours(count: int) -> tuple:
    """Matplotlib's qualitative colours for `count` series: ten, or twenty past ten, so none repeat
    up to twenty."""
    return _pyplot().get_cmap("tab20" if count > 10 else "tab10").colors


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    _pyplot().close(figure)
    return path


def _log_y(axes, values: list[float]) -> None:
    """A log y axis; over less than two decades its ticks are plain numbers (40, 45), not 4.5e1."""
    from matplotlib.ticker import FuncFormatter

    axes.set_yscale("log")
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) < 100:
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)
        axes.tick_params(axis="y", which="minor", labelsize=7)


def _sparsity_x(labels: list[str]) -> dict[str, float]:
    """x positions: sparsities as numbers; N:M patterns after the largest, one step apart."""
    numeric = {label: float(label) for label in labels if ":" not in label}
    top = max(numeric.values(), default=0.0)
    return {**numeric, **{label: top + 0.1 * (i + 1)
                          for i, label in enumerate(x for x in labels if ":" in x)}}


def _errorbar(axes, xs, stats, label, **style):
    axes.errorbar(xs, [s.mean for s in stats], yerr=[s.std or 0 for s in stats], marker="o",
                  capsize=3, label=label, **style)


def line_plot(series: dict[str, list[tuple[float, float]]], path: Path, *, xlabel: str, ylabel: str,
              title: str, log_y: bool = False) -> Path:
    """One line per series of (x, y) points, sorted by x."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        points = sorted(points)
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    if log_y:
        axes.set_yscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def loss_curve(history: list[dict], path: Path, title: str) -> Path:
    """Training loss per step, held-out loss (and F1 where measured) at each evaluation, from
    the Trainer's log history."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    train = [(row["step"], row["loss"]) for row in history if "loss" in row]
    held_out = [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row]
    if train:
        axes.plot([s for s, _ in train], [v for _, v in train], label="training loss", alpha=0.8)
    if held_out:
        axes.plot([s for s, _ in held_out], [v for _, v in held_out], marker="o", label="held-out loss")
    axes.set(xlabel="optimizer step", ylabel="loss", title=title)
    axes.grid(True, alpha=0.3)
    if any("eval_f1_micro" in row for row in history):
        right = axes.twinx()
        for key, style, color in (("eval_f1_micro", "s-", "tab:green"),
                                  ("eval_f1_macro", "^-", "tab:red")):
            rows = [row for row in history if key in row]
            right.plot([row["step"] for row in rows], [row[key] for row in rows], style,
                       color=color, label=key.removeprefix("eval_").replace("_", " "))
        right.set(ylabel="held-out F1", ylim=(0, 1))
        right.legend(fontsize=8, loc="upper right")
    axes.legend(fontsize=8, loc="upper left")
    return _save(figure, path)


def metric_vs_sparsity(groups: list[Group], column: Column, baseline: str, path: Path) -> Path | None:
    """One line per pruning method: the metric against sparsity (log axis for perplexity)."""
    grid, labels = pruning_grid(groups, baseline)
    if not grid:
        return None
    x = _sparsity_x(labels)
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for method, by_label in grid.items():
        points = [(x[label], s) for label in labels
                  if (g := by_label.get(label)) and (s := g.stat(column))]
        if points:
            _errorbar(axes, [p for p, _ in points], [s for _, s in points], method)
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    nm = [label for label in labels if ":" in label]
    ticks = [label for label in labels]
    axes.set_xticks([x[label] for label in ticks], [("dense" if t == "0" else t) for t in ticks])
    if column.higher_is_better is False:
        _log_y(axes, [s.mean for by_label in grid.values() for g in by_label.values()
                      if (s := g.stat(column))])
    axes.set(xlabel="sparsity (fraction of weights zeroed" + ("; N:M patterns right" if nm else "") + ")",
             ylabel=column.label + (" (log scale)" if column.higher_is_better is False else ""),
             title=f"{column.label} vs sparsity")
    axes.grid(True, alpha=0.3, which="both")
    axes.legend(fontsize=8)
    return _save(figure, path)


def tasks_vs_sparsity(groups: list[Group], columns: list[Column], baseline: str, method: str,
                      path: Path) -> Path | None:
    """One line per task: its accuracy/F1 against sparsity, for one pruning method."""
    grid, labels = pruning_grid(groups, baseline)
    accuracy = [c for c in columns if c.higher_is_better]
    if not grid or method not in grid or not accuracy:
        return None
    x = _sparsity_x(labels)
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for column in accuracy:
        points = [(x[label], s) for label in labels
                  if (g := grid[method].get(label)) and (s := g.stat(column))]
        if points:
            _errorbar(axes, [p for p, _ in points], [s for _, s in points], column.label)
    axes.set_xticks([x[label] for label in labels], [("dense" if t == "0" else t) for t in labels])
    axes.set(xlabel="sparsity (fraction of weights zeroed)", ylabel="score (higher is better)",
             title=f"{method}: accuracy and F1 per task vs sparsity")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


STRUCTURED_AXES = {"heads": "attention heads kept per layer", "ffn": "FFN width (channels kept per layer)"}


def structured_plots(groups: list[Group], columns: list[Column], baseline: str, folder: Path) -> list[Path]:
    """For `structured` runs: each accuracy-like metric, and the model size, against the heads
    and the FFN width kept (one line per model; the baseline is the full width)."""
    made = []
    for dim, by_model in structured_points(groups, baseline).items():
        if sum(len(points) for points in by_model.values()) < 2:
            continue
        for column in [c for c in columns if c.higher_is_better]:
            series = {model: [(kept, s.mean) for kept, g in points if (s := g.stat(column))]
                      for model, points in by_model.items()}
            made.append(line_plot(series, folder / f"{slug(column.label)}_vs_{dim}.png",
                                  xlabel=STRUCTURED_AXES[dim], ylabel=column.label,
                                  title=f"{column.label} vs {STRUCTURED_AXES[dim].split(' (')[0]}"))
        series = {model: [(kept, g.size_mb) for kept, g in points if g.size_mb is not None]
                  for model, points in by_model.items()}
        made.append(line_plot(series, folder / f"size_vs_{dim}.png", xlabel=STRUCTURED_AXES[dim],
                              ylabel="model size in memory (MB)",
                              title=f"Size vs {STRUCTURED_AXES[dim].split(' (')[0]}"))
    return made


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both size (smaller) and metric, sorted by size."""
    better = (lambda a, b: a >= b) if higher_is_better else (lambda a, b: a <= b)
    front = [p for p in points
             if not any(q != p and q[0] <= p[0] and better(q[1], p[1]) for q in points)]
    return sorted(front)


_CALIBRATION_OPTION = re.compile(r":(?:calibration|nsamples|seqlen|seed)=[^:+]+")


def short_label(recipe: str) -> str:
    """A recipe without its calibration options (the sweep's, common to its runs), for labels."""
    return _CALIBRATION_OPTION.sub("", recipe)


def _coinciding(points, log: bool) -> dict[tuple[float, float], list[str]]:
    """Points that would overlap on the plot (size within 1%, value within 2%) share one
    label, their recipes joined."""
    import math

    merged: dict[tuple[float, float], list[str]] = {}
    for size, value, recipe in points:
        for (other_size, other_value), names in merged.items():
            close_value = (abs(math.log(value / other_value)) < 0.02 if log and value > 0 and other_value > 0
                           else abs(value - other_value) <= 0.02 * max(abs(other_value), 1e-9))
            if abs(size - other_size) <= 0.01 * other_size and close_value:
                names.append(short_label(recipe))
                break
        else:
            merged[(size, value)] = [short_label(recipe)]
    return merged


def size_vs_metric(groups: list[Group], column: Column, path: Path) -> Path | None:
    """Each configuration's size against the metric, with the Pareto front drawn and labelled
    (the other points' labels would pile up; the tables name every run). None when the sizes
    do not differ (unstructured pruning keeps dense storage): there is no trade-off to show."""
    label_of = series_label(groups)
    points = [(g.size_mb, s.mean, label_of(g, g.recipe)) for g in groups
              if g.size_mb is not None and (s := g.stat(column))]
    sizes = [p[0] for p in points]
    if len(points) < 2 or column.higher_is_better is None or max(sizes) - min(sizes) < 0.01 * max(sizes):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 5))
    axes.scatter(sizes, [p[1] for p in points], color="tab:blue", zorder=3, label="runs")
    front = pareto_front([(p[0], p[1]) for p in points], column.higher_is_better)
    axes.plot([p[0] for p in front], [p[1] for p in front], color="tab:red", linestyle="--",
              marker="o", zorder=2, label="Pareto front (no run smaller and better)")
    on_front = [p for p in points if (p[0], p[1]) in front]
    for (size, value), names in _coinciding(on_front, log=column.higher_is_better is False).items():
        axes.annotate(", ".join(names), (size, value), fontsize=7, xytext=(4, 3),
                      textcoords="offset points")
    if column.higher_is_better is False:
        _log_y(axes, [p[1] for p in points])
    axes.set(xlabel="model size in memory (MB)",
             ylabel=column.label + (" (log scale, lower is better)" if column.higher_is_better is False
                                    else " (higher is better)"),
             title=f"Size vs {column.label}")
    axes.grid(True, alpha=0.3, which="both")
    axes.legend(fontsize=8)
    return _save(figure, path)


def bits_plot(groups: list[Group], path: Path) -> Path | None:
    """Size (MB) and prefill tokens/s per bit-width, one panel each, a line per method."""
    label_of = series_label(groups)
    by_method: dict[str, list[tuple[int, Group]]] = {}
    for group in groups:
        if point := bits_point(group):
            by_method.setdefault(label_of(group, point[0]), []).append((point[1], group))
    if len({bits for items in by_method.values() for bits, _ in items}) < 2:
        return None
    plt = _pyplot()
    figure, (size_axes, speed_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for method, items in sorted(by_method.items()):
        items.sort(key=lambda item: item[0])
        bits = [b for b, _ in items]
        size_axes.plot(bits, [g.size_mb for _, g in items], marker="o", label=method)
        speed_axes.plot(bits, [g.mean_of(lambda r: r.timing.prefill_tokens_per_s) for _, g in items],
                        marker="o", label=method)
    all_bits = sorted({b for items in by_method.values() for b, _ in items})
    for axes, ylabel in ((size_axes, "model size in memory (MB)"),
                         (speed_axes, "prefill speed (tokens/s, this machine)")):
        axes.set_xticks(all_bits)
        axes.set(xlabel="bits per weight", ylabel=ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    size_axes.set_title("Size per bit-width")
    speed_axes.set_title("Speed per bit-width")
    return _save(figure, path)


def breakdown_plots(groups: list[Group], baseline: str, folder: Path) -> list[Path]:
    """Grouped bars per task and kind of part (MATH subjects, levels, MMLU categories) and model:
    the headline metric per part, one bar per run (the baseline first), its stderr-free mean."""
    made = []
    plt = _pyplot()
    models = list(dict.fromkeys(group.preset for group in groups))
    for breakdown, model in [(b, m) for b in breakdowns(groups) for m in models]:
        runs = [g for g in breakdown_runs(breakdown, groups, baseline) if g.preset == model]
        if len(runs) < 2:
            continue
        # the legend goes beside the bars; past ten runs, twenty colours so no two runs share one
        figure, axes = plt.subplots(figsize=(max(7, 1.1 * len(breakdown.parts) + 2) + 4, 4.5))
        colours = _colours(len(runs))
        width = 0.8 / len(runs)
        for index, group in enumerate(runs):
            values = [s.mean if (s := group.stat(part_column(breakdown, part))) else 0.0
                      for part in breakdown.parts]
            axes.bar([i + (index - (len(runs) - 1) / 2) * width for i in range(len(breakdown.parts))],
                     values, width, label=group.recipe, color=colours[index % len(colours)])
        metric = breakdown.metric.partition(",")[0]
        axes.set_xticks(range(len(breakdown.parts)), breakdown.parts, rotation=20, ha="right")
        # several models: a figure each, the model in its title and file name
        of_model = f" ({model})" if len(models) > 1 else ""
        axes.set(xlabel=breakdown.kind, ylabel=f"{metric} (higher is better)",
                 title=f"{breakdown.task}: {metric} by {breakdown.kind}{of_model}")
        axes.grid(True, axis="y", alpha=0.3)
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside: bars fill the axes
        name = f"{slug(breakdown.task)}_by_{breakdown.kind}" + (f"_{slug(model)}" if of_model else "")
        made.append(_save(figure, folder / f"{name}.png"))
    return made


def speed_plot(run: dict, path: Path) -> Path | None:
    """A `compbench speed` run: decode tokens/s against MB read per token, a point per subject,
    with the bandwidth limit (tokens/s = bandwidth / bytes) drawn; None before any measurement."""
    from matplotlib.ticker import FuncFormatter

    from compbench.reports.speed import decode_medians

    medians = decode_medians(run)
    points = {name: (info["bytes_read_per_token"] / 2**20, medians[name])
              for name, info in run["subjects"].items() if medians[name]}
    if not points:
        return None
    # a legend names the points: recipes often share a size, and labels beside them would overlap
    figure, axes = _pyplot().subplots(figsize=(11, 5))
    sizes = [mb for mb, _ in points.values()]
    low, high = min(sizes) * 0.8, max(sizes) * 1.25
    bandwidth_mb = run["read_bandwidth_gb_per_s"] * 1e9 / 2**20
    xs = [low * (high / low) ** (i / 50) for i in range(51)]
    axes.plot(xs, [bandwidth_mb / x for x in xs], "--", color="grey",
              label=f"bandwidth limit ({run['read_bandwidth_gb_per_s']:.0f} GB/s)")
    colours = _colours(len(points))
    for index, (name, (mb, speed)) in enumerate(points.items()):
        axes.plot([mb], [speed], "s" if run["subjects"][name]["kind"] == "llama.cpp" else "o",
                  markersize=7, linestyle="none", label=f"{name} ({speed:.0f})",
                  color=colours[index % len(colours)])
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    # of the minor ticks only 2x, 3x and 5x a power of ten are labelled: 90 beside 100 overlapped
    sparse = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:e}"[0] in "235" else "")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(sparse)
    axes.tick_params(which="both", labelsize=8)
    axes.set_xlabel("MB of weights read per decoded token")
    axes.set_ylabel("batch-1 decode tokens/s")
    axes.set_title(f"{run['model']}: decode speed (o compbench, s llama.cpp)")
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(figure, path)
