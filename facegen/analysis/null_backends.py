"""Backends that measure nothing, for runs that do not need a job (documented placeholders)."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from facegen.analysis.base import EmotionBackend, EmotionEstimate, FaceLandmarks, IdentityBackend, unknown_emotion
from facegen.labels import ID_EMBED_DIM


class NoEmotion(EmotionBackend):
    """`--emotion-backend none`: uniform probabilities, NaN valence/arousal and emotion class -1."""

    name = "none"
    crop_size: ClassVar[int] = 64

    def predict(self, crops: Sequence[np.ndarray]) -> list[EmotionEstimate]:
        return [unknown_emotion() for _ in crops]


class NoIdentity(IdentityBackend):
    """`--identity-backend none`: an all-zero embedding (rows unusable for identity training)."""

    name = "none"
    dim: ClassVar[int] = ID_EMBED_DIM
    match_threshold: ClassVar[float] = float("nan")

    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        return np.zeros(self.dim, np.float32)
