"""The floors (docs/architecture.md): every room is on one, and a module imports only the rooms on
floors below its own (and its own room); no two modules import each other, directly or round a
circle; the model zoo starts no process; lm-eval is used through its public hooks."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {
    "errors": -1,
    "core": 0,
    "model_zoo": 1,
    "compressors": 2, "tasks": 2,
    "records": 3,
    "artifacts": 4, "reports": 4,
    "evaluation": 5, "stages": 5,
    "orchestration": 6,
    "cli": 7,
}
DATA_ONLY = {"sweeps"}  # study files; its __init__ only names the folder
NOT_ROOMS = {"tests", "bench", "docs", "examples", "results", "runs", "build", "dist"}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (`cli.main`, `errors`), tests and bench apart."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in NOT_ROOMS:
            continue
        if relative.parts[0].startswith("."):
            continue
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path):
    """Every `compbench.<module>` a module imports, at module level or inside functions, with
    the line (an import of a name from a package counts as the package, or the module named)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in targets:
            parts = name.split(".")
            if parts[0] == "compbench" and len(parts) > 1:
                yield ".".join(parts[1:]), node.lineno


def _room(module: str) -> str:
    return module.split(".")[0]


def upward_imports(modules: dict[str, Path]) -> list[str]:
    """Each import of a room on the same floor or above, as `file:line imports compbench.X`."""
    wrong = []
    for name, path in modules.items():
        room = _room(name)
        if room not in FLOOR:
            continue
        for imported, line in _imports(path):
            other = _room(imported)
            if other in FLOOR and other != room and FLOOR[other] >= FLOOR[room]:
                wrong.append(f"{name.replace('.', '/')}.py:{line} imports compbench.{imported}")
    return sorted(set(wrong))


def circles(modules: dict[str, Path]) -> list[list[str]]:
    """The import circles between modules (strongly connected sets of two or more)."""
    graph = {name: {i for i, _ in _imports(path) if i in modules and i != name}
             for name, path in modules.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_room_is_on_a_floor():
    rooms = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert rooms - NOT_ROOMS - DATA_ONLY == set(FLOOR) - {"errors"}


def test_no_module_imports_a_floor_above_or_beside_it():
    wrong = upward_imports(_modules())
    assert not wrong, "\n".join(wrong)


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """The check itself can fail: a reports module that imports the runner is caught."""
    modules = _modules()
    bad = tmp_path / "table.py"
    bad.write_text(modules["reports.table"].read_text()
                   + "\n\ndef _up():\n    from compbench.orchestration.runner import run_plan\n")
    modules["reports.table"] = bad
    assert any("imports compbench.orchestration.runner" in line for line in upward_imports(modules))


def test_no_two_modules_import_each_other():
    assert circles(_modules()) == []


def test_no_room_holds_more_than_a_quarter_of_the_code():
    lines = {}
    for name, path in _modules().items():
        lines[_room(name)] = lines.get(_room(name), 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert max(lines.values()) <= 0.25 * total, lines


def test_the_model_zoo_starts_no_process():
    found = [str(p.relative_to(ROOT)) for p in (ROOT / "model_zoo").glob("*.py")
             if "subprocess" in p.read_text()]
    assert not found


def test_lm_evals_classes_and_modules_are_not_assigned_to():
    """No `setattr` on, or assignment to an attribute of, anything imported from lm_eval."""
    wrong = []
    for path in _modules().values():
        tree = ast.parse(path.read_text())
        from_lm_eval = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                        and (node.module or "").startswith("lm_eval") for a in node.names}
        from_lm_eval |= {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
                         if isinstance(node, ast.Import) for a in node.names if a.name.startswith("lm_eval")}
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                named = isinstance(root, ast.Name) and root.id in from_lm_eval
                if isinstance(target, ast.Attribute) and named:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr"
                    and isinstance(node.args[0], ast.Name) and node.args[0].id in from_lm_eval):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_compressors_import_without_lm_eval_or_the_floors_above():
    loaded = _loaded_after("import compbench.compressors")
    assert "compbench.compressors.gptq" in loaded  # every method registered
    above = {m for m in loaded if m.split(".")[0] == "lm_eval"
             or (m.startswith("compbench.") and FLOOR.get(m.split(".")[1], 0) > FLOOR["compressors"])}
    assert not above


def test_the_ground_floor_needs_only_torch_and_psutil():
    loaded = _loaded_after("import compbench.core.io, compbench.core.measure, compbench.core.tensors")
    ours = {m for m in loaded if m.startswith("compbench.")}
    assert ours <= {"compbench.core", "compbench.core.io", "compbench.core.measure",
                    "compbench.core.tensors", "compbench.errors"}
    assert not {m for m in loaded if m.split(".")[0] in ("lm_eval", "transformers", "datasets")}


@pytest.mark.parametrize("graph, expected", [
    ({"a": "b", "b": "a", "c": "a"}, [["a", "b"]]),
    ({"a": "b", "b": "c", "c": "a"}, [["a", "b", "c"]]),
    ({"a": "b", "b": "c", "c": ""}, []),
])
def test_the_circle_check_finds_circles(tmp_path, graph, expected):
    modules = {}
    for name, target in graph.items():
        (tmp_path / f"{name}.py").write_text(f"import compbench.{target}\n" if target else "")
        modules[name] = tmp_path / f"{name}.py"
    assert circles(modules) == expected
