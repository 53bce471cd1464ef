"""Problems the uncompressed model solved and a compressed one failed, read from the samples
logs generative runs keep beside their results (evaluation/generation.py): the first few per
task and compressed recipe, with the problem and both models' answers, so a person sees what
compression broke rather than only how much."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from compbench.records.record import RunRecord
from compbench.reports.table import find_baseline, groups

SHOWN = 3  # problems listed per task and compressed recipe
TEXT_CHARS = 240  # of a problem, and of each model's output


@dataclass(frozen=True)
class Sample:
    """One scored problem of a samples log, under the task's headline filter."""

    problem: str
    output: str  # what the model wrote
    answer: str  # what the filter read from it
    solved: bool


@dataclass(frozen=True)
class Regressions:
    """A task's problems solved by the baseline and failed by one compressed run."""

    task: str
    metric: str
    preset: str
    recipe: str
    baseline_solved: int  # of the problems both runs answered
    compared: int
    failed: list[tuple[Sample, Sample]]  # (baseline, compressed), every one, in document order


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def _answer(sample: Sample) -> str:
    """" (answer X)" when a filter read an answer out of the output; nothing when the task
    checks the whole output (MATH: its answer is extracted while scoring, not by a filter)."""
    return "" if sample.answer == sample.output else f" (answer {_short(sample.answer)})"


def read_samples(path: Path, metric: str, filter_name: str) -> dict[str, Sample]:
    """A samples log's problems under one filter, keyed by the document's hash (runs with
    different limits still line up); a problem is solved when its metric is 1."""
    samples = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("filter", "none") != filter_name or metric not in row:
            continue
        doc = row.get("doc") or {}
        problem = doc.get("question") or doc.get("problem") or json.dumps(doc)[:TEXT_CHARS]
        filtered = row.get("filtered_resps") or [""]
        samples[str(row.get("doc_hash", row.get("doc_id")))] = Sample(
            problem=problem, output=str(row["resps"][0][0]), answer=str(filtered[0]),
            solved=float(row[metric]) == 1.0)
    return samples


def _samples_path(record: RunRecord, task: str) -> Path | None:
    entry = ((record.generation or {}).get("tasks") or {}).get(task) or {}
    if not entry.get("samples") or record.source is None:
        return None
    path = record.source.parent / entry["samples"]
    return path if path.is_file() else None


def regressions(records: list[RunRecord], baseline_recipe: str) -> list[Regressions]:
    """For every compressed configuration with a samples log, against its baseline as the
    report's tables pair them (table.find_baseline: same model, tasks and limit; the newest
    run of each): the problems, under the task's headline metric and filter, the baseline
    solved and it failed."""
    found = []
    all_groups = groups(records)
    for group in (g for g in all_groups if g.recipe != baseline_recipe and g.first.generation):
        base_group = find_baseline(group, all_groups, baseline_recipe)
        if base_group is None or not base_group.first.generation:
            continue
        base, other = base_group.first, group.first
        for task in sorted(set(base.tasks) & set(other.tasks)):
            headline = base.tasks[task].headline or "exact_match,none"
            metric, _, filter_name = headline.partition(",")
            paths = _samples_path(base, task), _samples_path(other, task)
            if None in paths:
                continue
            before, after = (read_samples(p, metric, filter_name or "none") for p in paths)
            shared = [key for key in before if key in after]
            failed = [(before[k], after[k]) for k in shared if before[k].solved and not after[k].solved]
            found.append(Regressions(task, headline, base.preset, group.recipe,
                                     sum(before[k].solved for k in shared), len(shared), failed))
    return found


def markdown_section(records: list[RunRecord], baseline_recipe: str) -> list[str]:
    """The report's section (no lines when no run kept a samples log)."""
    lines: list[str] = []
    for found in regressions(records, baseline_recipe):
        lines += [f"### {found.task}: solved by {baseline_recipe}, failed by {found.recipe} "
                  f"({found.preset})", "",
                  f"{len(found.failed)} of the {found.baseline_solved} problems {baseline_recipe} solved "
                  f"(of {found.compared} both answered; {found.metric}).", ""]
        for number, (before, after) in enumerate(found.failed[:SHOWN], start=1):
            lines += [f"{number}. **Problem:** {_short(before.problem)}",
                      f"   - {baseline_recipe}{_answer(before)}: {_short(before.output)}",
                      f"   - {found.recipe}{_answer(after)}: {_short(after.output)}", ""]
    return ["## Problems compression broke", "", *lines] if lines else []
