"""`resolve_model_dir`: the manifest's `model:` entry -> a model folder on disk."""

from __future__ import annotations

import os
from pathlib import Path

from facegen.manifest.schema import Manifest

TINY_PRESET = "tiny"
TINY_PRESET_VERSION = "tiny-v1"


def model_cache_dir() -> Path:
    """Where built-in presets are built: `$FACEGEN_CACHE/models`, else `~/.cache/facegen/models`."""
    root = os.environ.get("FACEGEN_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "facegen"
    return base / "models"


SYNTHFACE_PRESET = "synthface"


def resolve_model_dir(manifest: Manifest) -> Path:
    """The model folder: `synthface` ships inside the package; `tiny` is built on first use into the
    cache (atomically); else the given folder."""
    if manifest.model == SYNTHFACE_PRESET:
        from facegen.model.presets import shipped_preset_dir

        path = shipped_preset_dir(SYNTHFACE_PRESET)
        if not (path / "facegen.json").is_file():
            raise manifest.error(
                ("model",), f"the synthface preset is not in this installation ({path}); rebuild it with `make synthface-model`"
            )
        return path
    if manifest.model == TINY_PRESET:
        target = model_cache_dir() / TINY_PRESET_VERSION
        if (target / "facegen.json").is_file():
            return target
        from facegen.model.presets import init_tiny_model

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{TINY_PRESET_VERSION}.{os.getpid()}.tmp"
        init_tiny_model(tmp, seed=0)
        try:
            os.replace(tmp, target)  # another process may have won the race: keep theirs
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        return target
    path = Path(manifest.model)
    if not path.is_dir():
        raise manifest.error(("model",), f"model folder {path} does not exist; fix the path or use `model: tiny`")
    if not (path / "facegen.json").is_file():
        raise manifest.error(("model",), f"{path} is not a facegen model folder (no facegen.json); point it at a folder made by facegen")
    return path
