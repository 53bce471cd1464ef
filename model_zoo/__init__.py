"""Model presets and their sources (embedded GGUFs, any GGUF file, packaged and trained models,
folders, hub ids), looked up and loaded; the model zoo never trains."""

from compbench.model_zoo.loading import load_model
from compbench.model_zoo.presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "Preset", "get_preset", "load_model"]
