"""What every analysis backend returns and the three small interfaces (landmarks, identity, emotion).

Images are RGB ``uint8`` arrays (H, W, 3). Landmarks follow MediaPipe's normalisation: x in [0, 1] of
the image width, y of the height, z in the same unit as x (smaller = closer to the camera).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from facegen.analysis.models import ModelFile
from facegen.labels import NUM_EMOTIONS


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's 478 MediaPipe landmarks, normalised to the image they were measured on."""

    points: np.ndarray  # (478, 3) float32
    width: int
    height: int

    def pixels(self) -> np.ndarray:
        """(478, 3) float64 in pixels: x*W, y*H and z*W (z shares x's unit, so the scale is isotropic)."""
        scale = np.array([self.width, self.height, self.width], dtype=np.float64)
        return self.points.astype(np.float64) * scale


@dataclass(frozen=True)
class HeadPose:
    """Degrees, in the sign convention of `facegen.conditions.pose`."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class EmotionEstimate:
    """8 class probabilities in `facegen.labels.EMOTION_NAMES` order, valence and arousal in [-1, 1].

    `emotion` is the arg-max class, or -1 when the backend measured nothing (the `none` backend).
    """

    probs: np.ndarray  # (8,) float32, sums to 1
    valence: float
    arousal: float
    emotion: int


def unknown_emotion() -> EmotionEstimate:
    """What the `none` emotion backend reports: uniform probabilities, NaN valence/arousal, class -1."""
    return EmotionEstimate(np.full(NUM_EMOTIONS, 1.0 / NUM_EMOTIONS, np.float32), float("nan"), float("nan"), -1)


class Backend(ABC):
    """A named estimator; `kind` is the job it does ("landmarks", "identity" or "emotion")."""

    kind: ClassVar[str]
    name: ClassVar[str]

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        """Weight files this backend needs (shown by `facegen weights check`)."""
        return []

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "Backend":
        """Build the backend from the models folder (FacegenError naming any missing file)."""
        return cls(**options)

    def close(self) -> None:
        """Release native resources (sessions, graphs); the default has none."""

    def prepare_batch(self, images: Sequence[np.ndarray]) -> None:
        """Optional: measure a whole batch at once before the per-image calls (which then reuse it);
        the default does nothing (`facegen.analysis.measure.measure_faces` calls it)."""


class LandmarkBackend(Backend):
    kind = "landmarks"

    @abstractmethod
    def detect(self, image: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the most prominent face, or None when no face is found."""


class IdentityBackend(Backend):
    kind = "identity"
    #: Embedding width.
    dim: ClassVar[int]
    #: Cosine similarity above which two faces count as the same person (used by `verify --reject`).
    match_threshold: ClassVar[float]

    @abstractmethod
    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        """L2-normalised embedding (dim,) float32 of the face (located by `face` if given), or None."""

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two embeddings."""
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

    @classmethod
    def similarity_matrix(cls, embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
        """(N, M) similarity of measured embeddings to references (e.g. a plan's identity vectors);
        cosine by default. A backend whose embeddings carry unreadable parts overrides it."""
        a, b = np.asarray(embeddings, np.float64), np.asarray(references, np.float64)
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return a @ b.T


class EmotionBackend(Backend):
    kind = "emotion"
    #: Side of the square face crop the network reads; callers may pass any size, it is resized.
    crop_size: ClassVar[int]

    @abstractmethod
    def predict(self, crops: Sequence[np.ndarray]) -> list[EmotionEstimate]:
        """One estimate per square RGB face crop."""


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    v = np.asarray(vectors, dtype=np.float64)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
