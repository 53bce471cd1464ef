"""Adding a compression method touches only its own module and the registry's import list: a toy
method, written here as a module of its own and registered, is parsed in recipes, listed by
`compbench methods`, applied and evaluated, and placed by reports in the method x sparsity table
from what its registration declares, with no edit anywhere else."""

import importlib.util
import re
import sys

import pytest

from compbench.compressors import COMPRESSORS

TOY_MODULE = '''
"""toyprune: zero every other weight of each targeted linear layer's rows, up to `sparsity`."""

from dataclasses import dataclass

import torch

from compbench.compressors.registry import StepOutput, register_compressor
from compbench.compressors.targets import Targeted, linear_layers


@dataclass(frozen=True)
class ToyConfig(Targeted):
    sparsity: float = 0.5  # fraction of each row's weights zeroed
    version: int = 1
    MAIN_OPTION = "sparsity"

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.sparsity < 1:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")


def apply(model, config, context):
    zeroed = total = 0
    for layer in linear_layers(model, config).values():
        weight = layer.weight.data
        columns = int(weight.shape[1] * config.sparsity)
        with torch.no_grad():
            weight[:, :columns] = 0
        zeroed += columns * weight.shape[0]
        total += weight.numel()
    return StepOutput(model, {"sparsity": zeroed / total})


register_compressor("toyprune", ToyConfig, apply, kind="prune", axes=("sparsity",),
                    summary="toy: zero the first columns of every linear")
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy module, imported as a method module is (registering itself), unregistered after."""
    path = tmp_path / "toyprune.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("compbench_toyprune", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compbench_toyprune", module)
    spec.loader.exec_module(module)
    yield COMPRESSORS["toyprune"]
    del COMPRESSORS["toyprune"]


@pytest.mark.heavy
def test_a_toy_method_works_everywhere_from_its_registration(toy, checkpoint, data_dir, capsys):
    from compbench.artifacts.build import build
    from compbench.cli.main import main
    from compbench.compressors import parse_recipe
    from compbench.evaluation.evaluate import evaluate
    from compbench.evaluation.settings import EvalSettings
    from compbench.reports.table import build_tables

    recipe = parse_recipe("toyprune:0.25")
    assert str(recipe) == "toyprune:0.25" and str(parse_recipe(str(recipe))) == "toyprune:0.25"
    with pytest.raises(Exception, match="sparsity must be in"):
        parse_recipe("toyprune:1.5")
    assert main(["methods"]) == 0
    assert re.search(r"^toyprune +toy: zero the first columns", capsys.readouterr().out, re.M)

    settings = EvalSettings(("commonsense_qa",), limit=2)
    records = [evaluate(build("smollm2-135m", text, device="cpu"), settings)
               for text in ("fp32", "toyprune:0.25", "toyprune:0.5")]
    assert records[1].compression.steps[0]["stats"]["sparsity"] == pytest.approx(0.25, abs=0.01)
    tables = {t.name: t for t in build_tables(records, "fp32")}
    sparsity = tables["sparsity"]
    assert sparsity.header[1:] == ["sparsity 0", "sparsity 0.25", "sparsity 0.5"]
    [row] = sparsity.rows
    assert row[0] == "toyprune" and all(cell for cell in row[1:])
