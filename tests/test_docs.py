"""The README and docs/ hold together: every link resolves (files and #anchors), and every
`compbench` command quoted in a code block still parses with today's CLI, its recipes parse,
its presets, tasks and sweep files exist, and every `python bench/…` script it names is there."""

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#{1,6} ", line)}


def _links():
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in LINK.findall(text):
            if not target.startswith(("http://", "https://", "mailto:")):
                yield page, target


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page, target", list(_links()),
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
    if anchor:
        assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no heading #{anchor} in {path}"


def _commands() -> list[tuple[Path, str]]:
    """Each `compbench …` or `python bench/…` command in a fenced code block (continuation
    lines joined, `a | b` split), with the page it is on."""
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split(" | "):
                    part = part.strip()
                    if part.startswith(("compbench ", "python bench/")) and not part.startswith("compbench:"):
                        found.append((page, part))
    return found


def test_the_docs_quote_commands():
    commands = [c for _, c in _commands()]
    assert len(commands) > 30 and any(c.startswith("compbench sweep") for c in commands)


def _check_compbench(argv: list[str]) -> None:
    """The command parses with today's parser; its recipes, presets, tasks, sweep file exist."""
    from compbench.cli.main import build_parser
    from compbench.compressors import parse_recipe
    from compbench.evaluation.task_manager import task_manager
    from compbench.model_zoo.presets import get_preset
    from compbench.orchestration.sweep import load_sweep

    args = build_parser().parse_args(argv)
    recipes = [r for key in ("recipe", "student_recipe", "teacher_recipe", "method")
               for r in ([getattr(args, key, None)] if isinstance(getattr(args, key, None), str)
                         else getattr(args, key, None) or [])]
    for recipe in recipes:
        parse_recipe(recipe)
    model = getattr(args, "model", None) or getattr(args, "teacher", None)
    if model and "/" not in model and not model.endswith(".gguf") and "…" not in model:
        get_preset(model)
    if getattr(args, "tasks", None) and args.command == "eval":
        tasks = tuple(args.tasks.split(","))
        index = task_manager(tasks=tasks).task_index
        assert all(task in index for task in tasks), tasks
    if args.command == "sweep":
        load_sweep(ROOT / args.file)


def _check_lm_eval(argv: list[str]) -> None:
    """lm-eval's own parser reads it; `compressed`'s model args are ones it takes."""
    from lm_eval._cli import HarnessCLI

    from compbench.compressors import parse_recipe
    from compbench.evaluation.lm_model import model_arg_names

    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        args = HarnessCLI().parse_args()
    finally:
        sys.argv = saved
    if args.model == "compressed":
        assert set(args.model_args) <= model_arg_names(), args.model_args
        parse_recipe(str(args.model_args.get("recipe", "fp32")))


@pytest.mark.parametrize("page, command", _commands(),
                         ids=[f"{p.name}:{c[:60]}" for p, c in _commands()])
def test_every_quoted_command_still_runs_as_far_as_its_input(page, command, data_dir):
    words = shlex.split(command, comments=True)
    if words[0] == "python":
        assert (ROOT / words[1]).is_file(), f"{page.name}: {words[1]} does not exist"
        return
    words = words[1:]
    if words[0] == "lm-eval":
        _check_lm_eval(words[1:])
    else:
        _check_compbench(words)
