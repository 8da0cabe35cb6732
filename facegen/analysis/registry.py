"""Backends by name: `get_backend("mediapipe")`, `get_backend("none", kind="emotion")`, ...

Modules are imported only when their backend is asked for, so e.g. the emotion backends never pull
in dlib or MediaPipe.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from facegen.analysis.base import Backend
from facegen.analysis.models import ModelFile, ModelFileStatus, resolve_models_dir
from facegen.errors import FacegenError

#: (kind, name) -> "module:Class"
_BACKENDS: dict[tuple[str, str], str] = {
    ("landmarks", "mediapipe"): "facegen.analysis.mediapipe_mesh:MediaPipeFaceMesh",
    ("landmarks", "synthface"): "facegen.analysis.synthface_backends:SynthfaceLandmarks",
    ("identity", "arcface"): "facegen.analysis.arcface_onnx:ArcFaceONNX",
    ("identity", "dlib"): "facegen.analysis.dlib_resnet:DlibResNet",
    ("identity", "synthface"): "facegen.analysis.synthface_backends:SynthfaceIdentity",
    ("identity", "none"): "facegen.analysis.null_backends:NoIdentity",
    ("emotion", "emonet"): "facegen.analysis.emonet:EmoNetBackend",
    ("emotion", "hsemotion"): "facegen.analysis.hsemotion_onnx:HSEmotionONNX",
    ("emotion", "synthface"): "facegen.analysis.synthface_backends:SynthfaceEmotion",
    ("emotion", "none"): "facegen.analysis.null_backends:NoEmotion",
}

KINDS = ("landmarks", "identity", "emotion")


def backend_names(kind: str) -> list[str]:
    """Registered backend names for one job."""
    return [name for (k, name) in _BACKENDS if k == kind]


def _load_class(target: str) -> type[Backend]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def backend_class(name: str, kind: str | None = None) -> type[Backend]:
    """The class registered under `name` (and `kind`, needed when a name is shared, e.g. "none")."""
    matches = [key for key in _BACKENDS if key[1] == name and (kind is None or key[0] == kind)]
    if len(matches) != 1:
        if not matches:
            known = ", ".join(sorted({n for (k, n) in _BACKENDS if kind is None or k == kind}))
            raise FacegenError(f"unknown {kind or 'analysis'} backend {name!r}; choose one of: {known}")
        raise FacegenError(f"backend name {name!r} is ambiguous; say which kind ({', '.join(k for k, _ in matches)})")
    return _load_class(_BACKENDS[matches[0]])


def backend_classes() -> list[type[Backend]]:
    """All registered classes (imports their modules; used by `weights check`)."""
    return [_load_class(target) for target in _BACKENDS.values()]


def get_backend(
    name: str, *, kind: str | None = None, models_dir: str | Path | None = None, **options: Any
) -> Backend:
    """Build the backend `name` with weights from `models_dir` (default: `$FACEGEN_MODELS`)."""
    return backend_class(name, kind).create(resolve_models_dir(models_dir), **options)


def expected_model_files() -> list[ModelFile]:
    """Every backend's files, in `weights check` order (here, not in `models`: backends import `models`)."""
    files: list[ModelFile] = []
    for cls in backend_classes():
        files.extend(cls.model_files())
    return files


def check_models(models_dir: Path) -> list[ModelFileStatus]:
    """Which expected files are present where."""
    return [ModelFileStatus(f, f.locate(models_dir)) for f in expected_model_files()]
