"""Plots from results JSON records (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from compbench.core.io import atomic_path


def line_plot(series: dict[str, list[tuple[float, float]]], path: Path, *, xlabel: str, ylabel: str,
              title: str, log_y: bool = False, labels: dict[str, list[str]] | None = None) -> Path:
    """One line per series (x, y points; sorted by x), optional point labels; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        order = sorted(range(len(points)), key=lambda i: points[i][0])
        xs = [points[i][0] for i in order]
        ys = [points[i][1] for i in order]
        axes.plot(xs, ys, marker="o", label=name)
        for i in order if labels and name in labels else []:
            axes.annotate(labels[name][i], points[i], fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path

