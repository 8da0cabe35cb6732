"""Face analysis: estimator backends picked by name, and the `extract` / `verify` pipelines.

Backends (``get_backend(name, kind=..., models_dir=...)``):

* landmarks: ``mediapipe`` — 478-point face mesh; `head_pose(face)` gives yaw/pitch/roll (degrees).
* identity: ``arcface`` (ONNX, 512-d, bring-your-own weights), ``dlib`` (128-d, shipped weights),
  ``none`` (zero vectors).
* emotion: ``emonet`` (`emonet_8.pth`), ``hsemotion`` (`enet_b0_8_va_mtl.onnx`), ``none`` (uniform
  probabilities, NaN valence/arousal, class -1).

Weights live in a models folder: ``--models DIR`` or ``$FACEGEN_MODELS`` (default
``~/.cache/facegen/models``); ``check_models(dir)`` / ``facegen weights check`` list what is expected.
"""

from facegen.analysis.base import (
    EmotionBackend,
    EmotionEstimate,
    FaceLandmarks,
    HeadPose,
    IdentityBackend,
    LandmarkBackend,
)
from facegen.analysis.headpose import head_pose, head_pose_from_points
from facegen.analysis.models import ModelFile, resolve_models_dir
from facegen.analysis.registry import backend_names, check_models, expected_model_files, get_backend

__all__ = [
    "EmotionBackend",
    "EmotionEstimate",
    "FaceLandmarks",
    "HeadPose",
    "IdentityBackend",
    "LandmarkBackend",
    "ModelFile",
    "backend_names",
    "check_models",
    "expected_model_files",
    "get_backend",
    "head_pose",
    "head_pose_from_points",
    "resolve_models_dir",
]
