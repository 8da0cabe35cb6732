"""Analysis backends for the synthface domain, all backed by the shipped proxy estimator.

- ``synthface`` landmarks: the estimator's identity, expression and pose pushed through the domain's
  own mesh model (`facegen.synthface.geometry`), so the 478 points come with the measured pose
  attached (`MeasuredLandmarks.pose`, which `head_pose` reports as is);
- ``synthface`` identity: the 512-d embedding in the domain's identity space (the space the plan's
  identity vectors live in, like ArcFace's);
- ``synthface`` emotion: 8-class probabilities + valence / arousal. It reads the whole framed image
  (``reads_full_image``): crops would change the framing the estimator was trained on.

The three share one measurement per image (a small cache keyed by the image bytes).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from facegen.analysis.base import (
    EmotionBackend,
    EmotionEstimate,
    FaceLandmarks,
    HeadPose,
    IdentityBackend,
    LandmarkBackend,
)


@dataclass(frozen=True)
class MeasuredLandmarks(FaceLandmarks):
    """Landmarks whose backend measured the head pose directly."""

    pose: HeadPose | None = None


_CACHE: OrderedDict[str, object] = OrderedDict()


def measure_image(image: np.ndarray):
    """The estimator's `Measurement` of one image (cached: the three backends share it)."""
    from facegen.synthface.estimator import load_estimator

    key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
    if key not in _CACHE:
        _CACHE[key] = load_estimator().measure(np.asarray(image)[None])
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def landmarks_from_measurement(m, index: int = 0) -> np.ndarray:
    """The domain mesh (478, 3) implied by a measurement (identity, expression, pose; no jitter)."""
    from facegen.conditions.pose import rotate_landmarks
    from facegen.conditions.template import CANONICAL_CENTER
    from facegen.synthface.geometry import deformed_mesh
    from facegen.synthface.params import identity_from_features

    identity = identity_from_features(m.identity_features[index])
    mesh = deformed_mesh(identity, m.expression[index])
    posed = rotate_landmarks(mesh, m.yaw[index], m.pitch[index], m.roll[index], center=CANONICAL_CENTER)
    return posed.astype(np.float32)


class SynthfaceLandmarks(LandmarkBackend):
    name = "synthface"

    def detect(self, image: np.ndarray) -> FaceLandmarks | None:
        m = measure_image(image)
        h, w = image.shape[:2]
        pose = HeadPose(float(m.yaw[0]), float(m.pitch[0]), float(m.roll[0]))
        return MeasuredLandmarks(landmarks_from_measurement(m), w, h, pose=pose)


class SynthfaceIdentity(IdentityBackend):
    name = "synthface"
    dim: ClassVar[int] = 512
    match_threshold: ClassVar[float] = 0.5
    #: Embeddings live in the space of the plan's identity vectors (compare with identities.npy).
    planned_space: ClassVar[bool] = True

    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        return measure_image(image).embedding[0]


class SynthfaceEmotion(EmotionBackend):
    name = "synthface"
    crop_size: ClassVar[int] = 64
    reads_full_image: ClassVar[bool] = True

    def predict(self, crops: Sequence[np.ndarray]) -> list[EmotionEstimate]:
        out = []
        for image in crops:
            m = measure_image(image)
            probs = m.emotion_probs[0]
            out.append(EmotionEstimate(probs, float(m.valence[0]), float(m.arousal[0]), int(probs.argmax())))
        return out
