"""Recipe grammar: parsing, canonical printing, the YAML form, and precise errors."""

import re

import pytest

from compbench.compressors import parse_recipe
from compbench.errors import CompbenchError


@pytest.mark.parametrize("text, canonical", [
    ("fp32", "fp32"),
    ("int8", "int8"),
    ("nf4", "nf4"),
    ("nf4:double_quant=true", "nf4:double_quant=true"),
    ("nf4:double_quant=false", "nf4"),
    ("fp4", "fp4"),
    ("magnitude:0.5", "magnitude:0.5"),
    ("magnitude:sparsity=0.25:scope=layer", "magnitude:0.25:scope=layer"),
    ("magnitude:0.25+int8", "magnitude:0.25+int8"),
    ("magnitude:0.25:scope=global+nf4:double_quant=true", "magnitude:0.25+nf4:double_quant=true"),
])
def test_parse_prints_canonical_and_round_trips(text, canonical):
    recipe = parse_recipe(text)
    assert str(recipe) == canonical
    assert parse_recipe(str(recipe)) == recipe


def test_yaml_form_parses_to_the_same_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("- method: magnitude\n  sparsity: 0.25\n  scope: layer\n"
                    "- method: nf4\n  double_quant: true\n")
    from_yaml = parse_recipe(str(path))
    from_string = parse_recipe("magnitude:0.25:scope=layer+nf4:double_quant=true")
    assert from_yaml == from_string
    assert str(from_yaml) == str(from_string)
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("steps:\n  - {method: magnitude, sparsity: 0.25, scope: layer}\n"
                       "  - {method: nf4, double_quant: true}\n")
    assert parse_recipe(str(mapping)) == from_string


def test_steps_record_method_version_and_full_config():
    steps = parse_recipe("magnitude:0.5+int8").as_dict()["steps"]
    from compbench.compressors.magnitude import MagnitudeConfig

    assert steps[0]["method"] == "magnitude" and steps[0]["version"] == MagnitudeConfig().version
    assert steps[0]["config"]["sparsity"] == 0.5 and steps[0]["config"]["scope"] == "global"
    assert "nsamples" not in steps[0]["config"]  # data-free: no calibration recorded
    ranked = parse_recipe("magnitude:0.25:scope=ranked").as_dict()["steps"][0]["config"]
    assert ranked["nsamples"] == 4 and ranked["calibration"] == "wikitext2"
    assert parse_recipe("rtn:3").as_dict()["steps"][0]["config"] == {
        "targets": "", "ignore": "", "bits": 3, "group_size": 64, "sym": True}
    assert steps[1]["method"] == "int8" and steps[1]["config"] == {
        "targets": "", "ignore": "", "threshold": 6.0}


@pytest.mark.parametrize("text, blocked", [
    ("magnitude:0.5+nf4", []),
    ("mixed:5:method=rtn", []),
    ("mixed:5:method=bnb", ["mixed:5:method=bnb"]),
    ("magnitude:0.5+dynamic-int8", ["dynamic-int8"]),
])
def test_unexportable_steps_are_those_from_pretrained_cannot_reload(text, blocked):
    assert [str(s) for s in parse_recipe(text).unexportable_steps()] == blocked


@pytest.mark.parametrize("text, written", [
    ("magnitude:0.5+nf4", "magnitude:0.5+nf4"),
    ("int8wo", "torchao-int8"),
    ("int8wo:ignore=down_proj", "torchao-int8:ignore=down_proj"),
    ("rtn:4:sym=false:format=int4-cpu", "rtn:4:sym=false"),
    ("magnitude:0.5+gptq:4:nsamples=8:format=int4-cpu", "magnitude:0.5+gptq:4:nsamples=8"),
    ("awq:4:format=int4-cpu", "awq:4"),
])
def test_export_writes_the_kernel_steps_twin_with_the_same_numbers(text, written):
    exported = parse_recipe(text).for_export("float32")
    assert str(exported) == written
    # the twin is that recipe exactly (same identity), so the checkpoint is the stored model's
    assert exported.as_dict() == parse_recipe(written).as_dict()


@pytest.mark.parametrize("text, blocked", [
    ("int4", "int4:64"), ("int8wo:head=true", "int8wo:head=true"), ("magnitude:0.5+hqq:4", "hqq:4"),
    ("dynamic-int8", "dynamic-int8"),
])
def test_export_refuses_a_step_with_no_stock_format_by_name(text, blocked):
    with pytest.raises(CompbenchError, match=rf"cannot be exported .*: {re.escape(blocked)} has no "
                                             "serialized format"):
        parse_recipe(text).for_export("float32")


def test_export_of_int8wo_on_bfloat16_weights_is_refused_and_int4_cpu_is_not():
    """int8wo quantizes in float32 and its twin torchao-int8 in the load dtype: in bfloat16 their
    integers differ; llm-compressor's integers are repacked as they are, in any dtype."""
    with pytest.raises(CompbenchError, match="int8wo on bfloat16 weights cannot be exported: its stock "
                                             "twin torchao-int8 quantizes them in bfloat16"):
        parse_recipe("int8wo").for_export("bfloat16")
    assert str(parse_recipe("rtn:4:format=int4-cpu").for_export("bfloat16")) == "rtn:4"


@pytest.mark.parametrize("text, message", [
    ("wnda:0.5", "unknown compression method 'wnda'"),
    ("magnitud:0.5", "did you mean 'magnitude'"),
    ("magnitude:1.5", "sparsity must be in [0, 1), got 1.5"),
    ("magnitude:-0.1", "sparsity must be in [0, 1)"),
    ("magnitude:1", "sparsity must be in [0, 1), got 1.0"),
    ("magnitude:abc", "option 'sparsity' must be a float, got 'abc'"),
    ("magnitude:spars=0.5", "unknown option 'spars'; did you mean 'sparsity'"),
    ("magnitude:0.5:scope=row", "scope must be one of global, layer"),
    ("magnitude:0.5:layer", "only the first argument may be a bare value"),
    ("magnitude:0.5:sparsity=0.2", "option 'sparsity' given twice"),
    ("magnitude:0.5,int8", "contains a comma or a space"),
    ("magnitude:0.5 +int8", "contains a comma or a space"),
    ("nf4+magnitude:0.5", "must be the last step"),
    ("int8:0.5", "takes no bare value"),
    ("nf4:double_quant=maybe", "option 'double_quant' must be a bool"),
    ("magnitude:=0.5", "malformed option '=0.5'"),
    ("a++b", "empty step"),
    ("", "empty recipe"),
    ("missing.yaml", "recipe file missing.yaml not found"),
])
def test_bad_recipes_give_precise_errors(text, message):
    with pytest.raises(CompbenchError) as error:
        parse_recipe(text)
    assert message in str(error.value)


def test_bad_yaml_recipe_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- sparsity: 0.5\n")
    with pytest.raises(CompbenchError, match="step 1: expected a mapping with 'method'"):
        parse_recipe(str(path))
