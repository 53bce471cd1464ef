"""Report tables from results records, in the shapes the research uses.

- `comparison`: size, compression ratio, each headline metric with its change vs the
  uncompressed baseline, and the compression **Score = ratio / (1 + drop)**, where a metric's
  drop is (baseline - compressed) / baseline when higher is better and (compressed - baseline) /
  baseline when lower is better (perplexity), and a run's drop is the mean over its headline
  metrics. Directions are lm-eval's `higher_is_better`, never guessed from a name.
- `sparsity`: each headline metric per pruning method x sparsity (the dense baseline as 0).
- `bits`: size, speed and each lower-is-better metric per quantization bit-width.
- `tasks`: each higher-is-better metric (accuracy, F1) per task vs sparsity, per method.
- `structured_points` (plots): metric and size against the heads or FFN width that
  `structured` kept.

Runs that differ only in their calibration seed are one row: mean ± standard deviation.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field

from compbench.core.io import as_stored
from compbench.records.record import RunRecord

_SEED = re.compile(r":seed=\d+")
TABLES = ("comparison", "sparsity", "bits", "tasks", "breakdown")


def compressor(method: str):
    """A step's registered compressor (its kind and report axes), or None for a method this
    installation does not know (a results file from another version)."""
    from compbench.compressors import COMPRESSORS

    return COMPRESSORS.get(method)


def is_cast(step: dict) -> bool:
    """A step that changes the dtype only: no compression."""
    found = compressor(step["method"])
    return found is not None and found.kind == "cast"


def compressing_steps(steps: list[dict]) -> list[dict]:
    """A recipe's steps without its dtype casts."""
    return [step for step in steps if not is_cast(step)]


def _one_step_along(group: Group, kind: str, axes: tuple[str, ...]) -> dict | None:
    """The group's one compressing step, where its method is of `kind` and swept along `axes`."""
    steps = compressing_steps(group.steps())
    found = compressor(steps[0]["method"]) if len(steps) == 1 else None
    return steps[0] if found is not None and found.kind == kind and found.axes == axes else None


@dataclass(frozen=True)
class Column:
    """A task metric shown in tables: lm-eval's key, a column label, and lm-eval's direction."""

    task: str
    key: str  # lm-eval's results key, e.g. "word_perplexity,none"
    label: str
    higher_is_better: bool | None


@dataclass(frozen=True)
class Stat:
    """A value over the seeds of one configuration: mean, sample standard deviation, count."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None,
                   len(values))

    def __str__(self) -> str:
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


@dataclass
class Group:
    """The runs of one configuration (model, recipe without its seed, tasks, limit)."""

    preset: str
    recipe: str
    records: list[RunRecord]

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    def stat(self, column: Column) -> Stat | None:
        values = [m.value for r in self.records
                  if (m := r.metric(column.task, column.key)) is not None and m.value is not None]
        return Stat.of(values)

    def mean_of(self, getter) -> float | None:
        values = [v for r in self.records if (v := getter(r)) is not None]
        return statistics.fmean(values) if values else None

    @property
    def size_mb(self) -> float | None:
        return self.first.compression.size_mb if self.first.compression else None

    @property
    def ratio(self) -> float | None:
        return self.first.compression.compression_ratio if self.first.compression else None

    def steps(self) -> list[dict]:
        return self.first.artifact.get("recipe", {}).get("steps", [])


@dataclass
class Table:
    """A titled table of formatted cells, with notes printed under it."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def seedless(recipe: str) -> str:
    """A canonical recipe without its calibration seed(s): the configuration seeds repeat."""
    return _SEED.sub("", recipe)


def columns(records: list[RunRecord]) -> list[Column]:
    """Each task's headline metric (its YAML metadata), or all its metrics when it names none."""
    found: dict[tuple[str, str], Column] = {}
    for record in records:
        for task, result in record.tasks.items():
            for key, metric in result.shown().items():
                label = (result.label if key == result.headline and result.label
                         else f"{task} {key.split(',')[0]}")
                found[(task, key)] = Column(task, key, label, metric.higher_is_better)
    return list(found.values())


def latest(records: list[RunRecord]) -> tuple[list[RunRecord], int]:
    """The finished runs, in the order they ran, keeping only the newest of runs of one exact
    configuration (the same recipe under another run key: older code or library versions);
    and how many were superseded."""
    ordered = sorted((r for r in records if r.ok), key=lambda r: r.timing.started_at if r.timing else 0)
    newest = {(r.preset, r.recipe, tuple(r.task_names), r.limit): r for r in ordered}
    kept = [r for r in ordered if newest[(r.preset, r.recipe, tuple(r.task_names), r.limit)] is r]
    return kept, len(ordered) - len(kept)


def groups(records: list[RunRecord]) -> list[Group]:
    """Finished runs grouped by configuration (seeds together), in the order they ran."""
    found: dict[tuple, Group] = {}
    for record in latest(records)[0]:
        key = (record.preset, seedless(record.recipe), tuple(record.task_names), record.limit)
        found.setdefault(key, Group(record.preset, seedless(record.recipe), [])).records.append(record)
    return list(found.values())


def find_baseline(group: Group, all_groups: list[Group], baseline_recipe: str) -> Group | None:
    """The baseline for `group`: the baseline recipe on the same model, tasks and limit."""
    for other in all_groups:
        if (other.recipe == baseline_recipe and other.preset == group.preset
                and other.first.task_names == group.first.task_names
                and other.first.limit == group.first.limit):
            return other
    return None


def drop(value: float, base: float, higher_is_better: bool) -> float:
    """The performance drop of `value` vs `base`: positive when worse, by lm-eval's direction."""
    return (base - value) / base if higher_is_better else (value - base) / base


def score(ratio: float, drops: list[float]) -> float:
    """Score = compression ratio / (1 + performance drop), the drop averaged over metrics."""
    return ratio / (1 + statistics.fmean(drops))


def _cell(value: float | None, fmt: str = ".2f") -> str:
    return "" if value is None else format(value, fmt)


def comparison(all_groups: list[Group], cols: list[Column], baseline_recipe: str) -> Table:
    seeded = any(len(g.records) > 1 for g in all_groups)
    header = ["model", "recipe"] + (["seeds"] if seeded else []) + ["size MB", "ratio"]
    for column in cols:
        header += [column.label, "Δ vs " + baseline_recipe]
    header += ["Score", "compress s", "eval tok/s"]
    classifiers = any(g.first.timing and g.first.timing.eval_samples_per_s for g in all_groups)
    header += ["eval samples/s"] if classifiers else []
    generative = any(g.first.generation for g in all_groups)
    header += ["decode tok/s", "TTFT s"] if generative else []
    rows, undirected = [], set()
    ordered = sorted(all_groups, key=lambda g: g.recipe != baseline_recipe)
    for group in ordered:
        base = find_baseline(group, all_groups, baseline_recipe)
        row = [group.preset, group.recipe] + ([str(len(group.records))] if seeded else [])
        row += [_cell(group.size_mb, ".1f"), "" if group.ratio is None else f"{group.ratio:.2f}x"]
        drops = []
        for column in cols:
            stat = group.stat(column)
            base_stat = base.stat(column) if base else None
            row.append("" if stat is None else str(stat))
            change = ""
            if stat is not None and base_stat is not None and base_stat.mean:
                change = f"{(stat.mean - base_stat.mean) / base_stat.mean:+.1%}"
                if column.higher_is_better is None:
                    undirected.add(column.label)
                else:
                    drops.append(drop(stat.mean, base_stat.mean, column.higher_is_better))
            row.append(change)
        row.append(f"{score(group.ratio, drops):.2f}" if drops and group.ratio else "")
        row += [_cell(group.mean_of(lambda r: r.compression.seconds if r.compression else None), ".1f"),
                _cell(group.mean_of(lambda r: r.timing.eval_tokens_per_s if r.timing else None), ".0f")]
        if classifiers:  # a classification head's scoring (evaluation/classify.py) counts rows
            row.append(_cell(group.mean_of(lambda r: r.timing.eval_samples_per_s if r.timing else None),
                             ".0f"))
        if generative:  # generative tasks' decoding (evaluation/generation.py)
            row += [_cell(group.mean_of(lambda r: (r.generation or {}).get("decode_tokens_per_s")), ".1f"),
                    _cell(group.mean_of(lambda r: (r.generation or {}).get("time_to_first_token_s")), ".1f")]
        rows.append(row)
    notes = ["Score = compression ratio / (1 + drop); a metric's drop is (baseline − compressed) / "
             "baseline when higher is better and (compressed − baseline) / baseline when lower is "
             "better; a run's drop is the mean over its metrics."]
    if undirected:
        notes.append(f"Not in the Score (lm-eval gives no direction): {', '.join(sorted(undirected))}.")
    if generative:
        notes.append("decode tok/s: new tokens a second over the run's batched generate calls (every "
                     "row of a batch counted); TTFT s: the median time to a batch's first new token.")
    if seeded:
        notes.append("Runs that differ only in calibration seed: mean ± sample standard deviation.")
    return Table("comparison", "Comparison with the uncompressed baseline", header, rows, notes)


def _pruning_point(group: Group) -> tuple[str, str, float] | None:
    """(method label, sparsity label, sparsity as a number) of a one-step pruning recipe."""
    step = _one_step_along(group, "prune", ("sparsity",))
    if step is None:
        return None
    config = step["config"]
    label = step["method"] + (f" ({config['scope']})" if config.get("scope", "global") != "global" else "")
    label += " (OWL)" if config.get("owl") else ""  # its own row, beside the uniform one
    if config.get("n") and config.get("m"):
        return label, f"{config['n']}:{config['m']}", config["n"] / config["m"]
    return label, f"{config['sparsity']:g}", float(config["sparsity"])


def bits_point(group: Group) -> tuple[str, int] | None:
    """(variant, bits) of a one-step recipe whose quantizer is swept along its bit-width; the
    variant is the method with the options it sets besides its bits (`rtn sym=false`), so that
    two variants of one method are two lines, not one."""
    step = _one_step_along(group, "quantize", ("bits",))
    if step is None:
        return None
    defaults = compressor(step["method"]).defaults()
    options = [f"{key}={_option_text(value)}" for key, value in step["config"].items()
               if key != "bits" and key in defaults and value != _as_stored(defaults[key])]
    return " ".join([step["method"], *options]), int(step["config"]["bits"])


def _as_stored(value):
    """A config default as a results file holds it (tuples read back as lists); a field with
    no default as a value no option equals."""
    return None if value is MISSING else as_stored(value)


def _option_text(value) -> str:
    """An option's value as a recipe spells it (`false`, `64`, `int4-cpu`)."""
    return value if isinstance(value, str) else json.dumps(value)


def series_label(all_groups: list[Group]) -> Callable[[Group, str], str]:
    """`label(group, name)`: a series' name (a pruning method, a bit-width variant), prefixed with
    its model when the groups hold several, so that no table row or plot line mixes models."""
    several = len({group.preset for group in all_groups}) > 1
    return lambda group, name: f"{group.preset}: {name}" if several else name


def pruning_grid(all_groups: list[Group], baseline_recipe: str):
    """{method: {sparsity label: group}}, sparsity labels sorted (N:M last), with each model's
    dense baseline as sparsity 0 of its methods (a method is a row per model where the groups
    hold several); None when there is no method x sparsity grid."""
    label_of = series_label(all_groups)
    grid: dict[str, dict[str, Group]] = {}
    order: dict[str, float] = {}
    for group in all_groups:
        point = _pruning_point(group)
        if point:
            method, label, value = point
            grid.setdefault(label_of(group, method), {})[label] = group
            order[label] = value + (1 if ":" in label else 0)
    if sum(len(v) for v in grid.values()) < 2:
        return None, []
    labels = sorted(order, key=order.get)
    bases = {method: find_baseline(next(iter(by_label.values())), all_groups, baseline_recipe)
             for method, by_label in grid.items()}
    if any(bases.values()):
        labels = ["0", *labels]
        for method, base in bases.items():
            if base is not None:
                grid[method]["0"] = base
    return grid, labels


STRUCTURED_DIMS = {"heads": ("heads_before", "heads_after"),
                   "ffn": ("intermediate_before", "intermediate_after")}


def structured_points(all_groups: list[Group], baseline_recipe: str
                      ) -> dict[str, dict[str, list[tuple[int, Group]]]]:
    """{"heads" | "ffn": {model: [(kept per layer, group)]}} from one-step recipes of a pruning
    method swept along heads and FFN width (`structured`) that remove only heads or only FFN
    channels, with the model's baseline at full width."""
    found: dict[str, dict[str, list[tuple[int, Group]]]] = {}
    full: dict[tuple[str, str], int] = {}
    for group in all_groups:
        step = _one_step_along(group, "prune", tuple(STRUCTURED_DIMS))
        measured = group.first.compression.steps if group.first.compression else []
        if step is None or len(measured) != 1:
            continue
        config, stats = step["config"], measured[0].get("stats", {})
        removed = [dim for dim in STRUCTURED_DIMS if config.get(dim)]
        if len(removed) == 1 and all(k in stats for k in STRUCTURED_DIMS[removed[0]]):
            before, after = STRUCTURED_DIMS[removed[0]]
            found.setdefault(removed[0], {}).setdefault(group.preset, []).append((stats[after], group))
            full[(removed[0], group.preset)] = stats[before]
    for dim, by_model in found.items():
        for model, points in by_model.items():
            bases = [g for g in all_groups if g.preset == model and g.recipe == baseline_recipe]
            if bases:
                points.append((full[(dim, model)], bases[0]))
            points.sort(key=lambda p: p[0])
    return found


def sparsity_tables(all_groups: list[Group], cols: list[Column], baseline_recipe: str) -> list[Table]:
    grid, labels = pruning_grid(all_groups, baseline_recipe)
    if not grid:
        return []
    tables = []
    for column in cols:
        rows = [[method] + [str(s) if (g := by_label.get(label)) and (s := g.stat(column)) else ""
                            for label in labels] for method, by_label in grid.items()]
        tables.append(Table("sparsity", f"{column.label} per method and sparsity",
                            ["method"] + [f"sparsity {label}" for label in labels], rows,
                            ["Sparsity 0 is the dense baseline; N:M columns keep N of every M weights."]))
    return tables


def task_tables(all_groups: list[Group], cols: list[Column], baseline_recipe: str) -> list[Table]:
    grid, labels = pruning_grid(all_groups, baseline_recipe)
    accuracy = [c for c in cols if c.higher_is_better]
    if not grid or not accuracy:
        return []
    tables = []
    for method, by_label in grid.items():
        rows = [[column.label] + [str(s) if (g := by_label.get(label)) and (s := g.stat(column)) else ""
                                  for label in labels] for column in accuracy]
        tables.append(Table("tasks", f"{method}: accuracy and F1 per task vs sparsity",
                            ["metric"] + [f"sparsity {label}" for label in labels], rows))
    return tables


def bits_table(all_groups: list[Group], cols: list[Column], baseline_recipe: str) -> list[Table]:
    label_of = series_label(all_groups)
    points = [(p, g) for g in all_groups if (p := bits_point(g))]
    if len({bits for (_, bits), _ in points}) < 2:
        return []
    lower = [c for c in cols if c.higher_is_better is False]
    header = ["method", "bits", "size MB", "ratio", "prefill tok/s", "eval tok/s"] + [c.label for c in lower]
    rows = []
    bases = {label_of(g, "uncompressed"): base for _, g in points
             if (base := find_baseline(g, all_groups, baseline_recipe)) is not None}
    for name, group in [*bases.items(), *sorted(((label_of(g, m), g) for (m, _), g in points),
                                                key=lambda item: (item[0], -bits_point(item[1])[1]))]:
        point = bits_point(group)
        prefill = group.mean_of(lambda r: r.timing.prefill_tokens_per_s if r.timing else None)
        evaluation = group.mean_of(lambda r: r.timing.eval_tokens_per_s if r.timing else None)
        rows.append([name, "" if point is None else str(point[1]), _cell(group.size_mb, ".1f"),
                     "" if group.ratio is None else f"{group.ratio:.2f}x",
                     _cell(prefill, ".0f"), _cell(evaluation, ".0f")]
                    + [str(s) if (s := group.stat(c)) else "" for c in lower])
    return [Table("bits", "Size, speed and perplexity per bit-width", header, rows,
                  ["Speeds are of this machine, measured in each run's own process: compare them "
                   "as ratios within one sweep."])]


@dataclass(frozen=True)
class Breakdown:
    """A task's headline metric over parts of its documents (MATH subjects or levels, MMLU
    categories): lm-eval keys `<metric>_<part>,<filter>` beside the headline `<metric>,<filter>`."""

    task: str
    metric: str  # the headline, e.g. "exact_match,none"
    kind: str  # "level" or "subject"
    parts: list[str]  # e.g. ["algebra", "geometry"], or ["1", "2", …]


def breakdowns(all_groups: list[Group]) -> list[Breakdown]:
    """Every breakdown the baseline-shaped runs' headline metrics have, per task and kind."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for group in all_groups:
        for task, result in group.first.tasks.items():
            if result.headline is None:
                continue
            name, _, filter_name = result.headline.partition(",")
            for key in result.metrics:
                metric, _, key_filter = key.partition(",")
                if key_filter != filter_name or not metric.startswith(name + "_"):
                    continue
                part = metric.removeprefix(name + "_")
                kind = "level" if part.startswith("level_") else "subject"
                parts = found.setdefault((task, result.headline, kind), [])
                if part.removeprefix("level_") not in parts:
                    parts.append(part.removeprefix("level_"))
    return [Breakdown(task, metric, kind, parts) for (task, metric, kind), parts in found.items()]


def part_column(breakdown: Breakdown, part: str) -> Column:
    name, _, filter_name = breakdown.metric.partition(",")
    key = f"{name}_{'level_' if breakdown.kind == 'level' else ''}{part},{filter_name}"
    return Column(breakdown.task, key, part, True)


def breakdown_runs(breakdown: Breakdown, all_groups: list[Group], baseline_recipe: str) -> list[Group]:
    """The configurations a breakdown's table and plot show: those that ran its task, per
    model with the baseline first."""
    ordered = sorted(all_groups, key=lambda g: (g.preset, g.recipe != baseline_recipe))
    return [g for g in ordered if breakdown.task in g.first.tasks]


def breakdown_tables(all_groups: list[Group], baseline_recipe: str) -> list[Table]:
    """Per task and kind of part: each run's headline metric per part, and for the compressed
    runs the share of the baseline's kept; notes name each run's largest drop."""
    label_of = series_label(all_groups)
    tables = []
    for breakdown in breakdowns(all_groups):
        runs = breakdown_runs(breakdown, all_groups, baseline_recipe)
        header = [breakdown.kind]
        for group in runs:
            header += [label_of(group, group.recipe)] + ([] if group.recipe == baseline_recipe else ["kept"])
        rows, largest = [], {}
        for part in breakdown.parts:
            column = part_column(breakdown, part)
            row = [part]
            for group in runs:
                stat = group.stat(column)
                row.append("" if stat is None else str(stat))
                if group.recipe == baseline_recipe:
                    continue
                base = find_baseline(group, all_groups, baseline_recipe)
                base_stat = base.stat(column) if base else None
                kept = stat.mean / base_stat.mean if stat and base_stat and base_stat.mean else None
                row.append("" if kept is None else f"{kept:.0%}")
                lost = base_stat.mean - stat.mean if stat and base_stat else 0.0
                if lost > largest.get(label_of(group, group.recipe), ("", 0.0))[1]:
                    largest[label_of(group, group.recipe)] = (part, lost)
            rows.append(row)
        notes = [f"{breakdown.metric} per {breakdown.kind}; kept = the run's value / the {baseline_recipe} "
                 "run's (empty where the baseline scored 0 or the run holds no such document)."]
        notes += [f"Largest drop, {recipe}: {part} ({drop_value:.2f} lower)"
                  for recipe, (part, drop_value) in largest.items()]
        tables.append(Table("breakdown", f"{breakdown.task}: {breakdown.metric.partition(',')[0]} by "
                            f"{breakdown.kind}", header, rows, notes))
    return tables


def build_tables(records: list[RunRecord], baseline_recipe: str = "fp32",
                 only: tuple[str, ...] | None = None) -> list[Table]:
    """Every table the records support (or only the named ones), comparison first."""
    all_groups = groups(records)
    cols = columns([g.first for g in all_groups])
    superseded = latest(records)[1]
    makers = {"comparison": lambda: [comparison(all_groups, cols, baseline_recipe)],
              "sparsity": lambda: sparsity_tables(all_groups, cols, baseline_recipe),
              "bits": lambda: bits_table(all_groups, cols, baseline_recipe),
              "tasks": lambda: task_tables(all_groups, cols, baseline_recipe),
              "breakdown": lambda: breakdown_tables(all_groups, baseline_recipe)}
    tables = [table for name in (only or TABLES) for table in makers[name]()]
    if superseded and tables:
        tables[0].notes.append(f"{superseded} older run(s) of a configuration that also has a newer "
                               "run (another run key: other code or library versions) left out.")
    return tables
