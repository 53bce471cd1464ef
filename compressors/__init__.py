"""Compression methods, one module each, composed by recipes.

Each method module is imported explicitly here, so a module that fails to import fails loudly.
"""

from compbench.compressors import (  # noqa: F401  (each registers its methods)
    awq,
    bnb,
    cast,
    dynamic_int8,
    gptq,
    hqq,
    int4,
    int8wo,
    magnitude,
    mixed,
    rotate,
    smoothquant,
    sparsegpt,
    structured,
    torchao,
    wanda,
)
from compbench.compressors.pipeline import CompressionResult, compress
from compbench.compressors.recipe import Recipe, Step, parse_recipe
from compbench.compressors.registry import COMPRESSORS, register_compressor

__all__ = [
    "COMPRESSORS", "CompressionResult", "Recipe", "Step", "compress", "parse_recipe",
    "register_compressor",
]
