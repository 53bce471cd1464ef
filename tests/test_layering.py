"""The floors: core (ground) < model_zoo < compressors, tasks < reports < harness. No module
imports a floor above it, and compressors can be imported without lm-eval or the harness."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"errors": -1, "core": 0, "model_zoo": 1, "compressors": 2, "tasks": 2, "reports": 3,
         "stages": 3,
         "harness": 4}


def _imports(path: Path):
    """Every `compbench.<package>` a module imports, at module level or inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "compbench" and len(parts) > 1:
                yield parts[1], node.lineno


@pytest.mark.parametrize("package", [p for p in FLOOR if p != "errors"])
def test_no_module_imports_a_floor_above_or_beside_it(package):
    wrong = []
    for path in sorted((ROOT / package).glob("*.py")):
        for imported, line in _imports(path):
            if imported in FLOOR and imported != package and FLOOR[imported] >= FLOOR[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports compbench.{imported}")
    assert not wrong, "\n".join(wrong)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_compressors_import_without_lm_eval_or_the_floors_above():
    loaded = _loaded_after("import compbench.compressors")
    assert "compbench.compressors.gptq" in loaded  # every method registered
    above = {m for m in loaded if m.split(".")[0] == "lm_eval"
             or m.startswith(("compbench.harness", "compbench.tasks", "compbench.reports"))}
    assert not above


def test_the_ground_floor_needs_only_torch_and_psutil():
    loaded = _loaded_after("import compbench.core.io, compbench.core.measure, compbench.core.tensors")
    ours = {m for m in loaded if m.startswith("compbench.")}
    assert ours <= {"compbench.core", "compbench.core.io", "compbench.core.measure",
                    "compbench.core.tensors", "compbench.errors"}
    assert not {m for m in loaded if m.split(".")[0] in ("lm_eval", "transformers", "datasets")}
