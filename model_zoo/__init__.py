"""Named model presets and the embedded default model."""

from compbench.model_zoo.presets import PRESETS, Preset, get_preset, load_model

__all__ = ["PRESETS", "Preset", "get_preset", "load_model"]
