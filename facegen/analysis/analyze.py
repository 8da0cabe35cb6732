"""One image -> one face record: landmarks, head pose, aligned crop, embedding, emotion, mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.analysis.align import box_crop, face_crop
from facegen.analysis.base import EmotionBackend, EmotionEstimate, HeadPose, IdentityBackend, LandmarkBackend
from facegen.analysis.headpose import head_pose
from facegen.analysis.images import ImageRejected
from facegen.analysis.masks import face_mask
from facegen.analysis.registry import get_backend

#: Emotion crops: square side / longer side of the landmark box (tight, like the detector boxes
#: EmoNet and HSEmotion were trained on). Stored crops use the canonical framing (`align.face_crop`).
EMOTION_CROP_MARGIN = 1.2


@dataclass
class FaceRecord:
    """Everything measured on one face; landmarks are normalised to `crop`."""

    crop: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (478, 3) float32
    pose: HeadPose
    embedding: np.ndarray  # (dim,) float32, L2-normalised
    emotion: EmotionEstimate
    mask: np.ndarray  # (S, S) bool


class FaceAnalyzer:
    """Runs the three backends on one image; one instance per process (backends hold native state)."""

    def __init__(
        self,
        landmarks: LandmarkBackend,
        identity: IdentityBackend,
        emotion: EmotionBackend,
        *,
        crop_size: int = 256,
    ) -> None:
        self.landmarks = landmarks
        self.identity = identity
        self.emotion = emotion
        self.crop_size = crop_size

    @classmethod
    def from_names(
        cls,
        *,
        landmarks: str = "mediapipe",
        identity: str = "arcface",
        emotion: str = "none",
        models_dir: str | Path | None = None,
        crop_size: int = 256,
    ) -> "FaceAnalyzer":
        return cls(
            get_backend(landmarks, kind="landmarks", models_dir=models_dir),  # type: ignore[arg-type]
            get_backend(identity, kind="identity", models_dir=models_dir),  # type: ignore[arg-type]
            get_backend(emotion, kind="emotion", models_dir=models_dir),  # type: ignore[arg-type]
            crop_size=crop_size,
        )

    def analyze(self, image: np.ndarray) -> FaceRecord:
        """The record of the most prominent face; ImageRejected("no-face", ...) when there is none."""
        face = self.landmarks.detect(image)
        if face is None:
            raise ImageRejected("no-face", f"{self.landmarks.name} found no face")
        embedding = self.identity.embed(image, face)
        if embedding is None:
            raise ImageRejected("no-face", f"{self.identity.name} found no face to embed")
        crop, crop_face = face_crop(image, face, self.crop_size)
        emo_crop, _ = box_crop(image, face, self.emotion.crop_size, EMOTION_CROP_MARGIN)
        (emotion,) = self.emotion.predict([emo_crop])
        return FaceRecord(
            crop=crop,
            landmarks=crop_face.points,
            pose=head_pose(face),
            embedding=embedding,
            emotion=emotion,
            mask=face_mask(crop_face.points, self.crop_size),
        )

    def close(self) -> None:
        for backend in (self.landmarks, self.identity, self.emotion):
            backend.close()
