"""Identity backend: ArcFace recognition network in ONNX (bring your own weights).

Accepts Arc2Face's `arcface.onnx` or insightface's `antelopev2/glintr100.onnx` / `buffalo_l/w600k_r50.onnx`:
input N x 3 x 112 x 112 RGB scaled as (x - 127.5) / 127.5, output N x 512. Faces are aligned to the
standard 5 reference points from MediaPipe's eye centres, nose tip and mouth corners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from facegen.analysis.align import arcface_crop
from facegen.analysis.base import FaceLandmarks, IdentityBackend, l2_normalise
from facegen.analysis.models import ModelFile
from facegen.analysis.onnx_session import OnnxModel

ARCFACE_FILES = ("arcface.onnx", "antelopev2/glintr100.onnx", "buffalo_l/w600k_r50.onnx", "glintr100.onnx", "w600k_r50.onnx")


class ArcFaceONNX(IdentityBackend):
    name = "arcface"
    dim: ClassVar[int] = 512
    match_threshold: ClassVar[float] = 0.3
    #: Embeddings live in the space of the plan's identity vectors (compare with identities.npy).
    planned_space: ClassVar[bool] = True
    input_size: ClassVar[int] = 112

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        self.model_path = Path(model_path)
        self.model = OnnxModel(self.model_path, expect_chw=(3, self.input_size, self.input_size), threads=threads)

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        return [ModelFile(cls.name, cls.kind, ARCFACE_FILES, "ArcFace identity embedding (512-d): extract, verify, ID photos")]

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "ArcFaceONNX":
        path = options.pop("model_path", None) or cls.model_files()[0].require(models_dir)
        return cls(path, **options)

    @staticmethod
    def preprocess(crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB -> (N, 3, 112, 112) float32 in [-1, 1]."""
        x = np.stack([np.asarray(c, np.float32) for c in crops])
        return ((x - 127.5) / 127.5).transpose(0, 3, 1, 2)

    def embed_aligned(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings (N, 512) of already aligned 112x112 crops, L2-normalised."""
        out = self.model.run(self.preprocess(crops))
        return l2_normalise(out.reshape(out.shape[0], -1))

    def align(self, image: np.ndarray, face: FaceLandmarks) -> np.ndarray:
        return arcface_crop(image, face, self.input_size)

    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        if face is None:
            return None  # ArcFace needs the 5 points; callers pass MediaPipe landmarks
        return self.embed_aligned([self.align(image, face)])[0]
