"""Artifacts: a preset compressed by a recipe, its identity, the models store that keeps it,
the uncompressed baseline check, LoRA adapters on it, and its export as a checkpoint."""
