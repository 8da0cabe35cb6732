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
from facegen.analysis.models import ModelFile


@dataclass(frozen=True)
class MeasuredLandmarks(FaceLandmarks):
    """Landmarks whose backend measured the head pose directly."""

    pose: HeadPose | None = None


_CACHE: OrderedDict[str, object] = OrderedDict()
_CACHE_SIZE = 8


def _key(image: np.ndarray) -> str:
    """The image's digest and the estimator that measures it (other weights, other measurement)."""
    from facegen.synthface.estimator import configured_weights_path

    return f"{configured_weights_path()}:{hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()}"


def measure_image(image: np.ndarray):
    """The estimator's `Measurement` of one image (cached: the three backends share it)."""
    from facegen.synthface.estimator import load_estimator

    key = _key(image)
    if key not in _CACHE:
        _CACHE[key] = load_estimator().measure(np.asarray(image)[None])
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def measure_batch(images: Sequence[np.ndarray]) -> None:
    """Measure equally sized images in one forward pass and cache each one's `Measurement` (the
    per-image backend calls that follow read the cache)."""
    from dataclasses import fields

    from facegen.synthface.estimator import load_estimator

    todo = [img for img in images if _key(img) not in _CACHE]
    if not todo or len({img.shape for img in todo}) != 1:
        return  # mixed sizes: measured one by one
    batch = load_estimator().measure(np.stack([np.asarray(img) for img in todo]))
    for i, img in enumerate(todo):
        _CACHE[_key(img)] = type(batch)(**{f.name: getattr(batch, f.name)[i : i + 1] for f in fields(batch)})
    while len(_CACHE) > max(_CACHE_SIZE, len(images)):
        _CACHE.popitem(last=False)


class _BatchedSynthface:
    """Mixin: the three synthface backends share one batched pass per batch of images."""

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        """The proxy estimator's weights: shipped in the package, or $FACEGEN_SYNTHFACE_ESTIMATOR."""
        import os

        from facegen.synthface.estimator import ESTIMATOR_ENV, configured_weights_path

        chosen = ESTIMATOR_ENV if os.environ.get(ESTIMATOR_ENV) else None
        return [ModelFile(cls.name, cls.kind, (str(configured_weights_path()),), "synthface proxy estimator", "facegen",
                          chosen_by=chosen)]

    def prepare_batch(self, images: Sequence[np.ndarray]) -> None:
        measure_batch(images)


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


class SynthfaceLandmarks(_BatchedSynthface, LandmarkBackend):
    name = "synthface"

    def detect(self, image: np.ndarray) -> FaceLandmarks | None:
        m = measure_image(image)
        h, w = image.shape[:2]
        pose = HeadPose(float(m.yaw[0]), float(m.pitch[0]), float(m.roll[0]))
        return MeasuredLandmarks(landmarks_from_measurement(m), w, h, pose=pose)


class SynthfaceIdentity(_BatchedSynthface, IdentityBackend):
    name = "synthface"
    dim: ClassVar[int] = 512
    match_threshold: ClassVar[float] = 0.5
    #: Embeddings live in the space of the plan's identity vectors (compare with identities.npy).
    planned_space: ClassVar[bool] = True

    def embed(self, image: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        return measure_image(image).embedding[0]

    @classmethod
    def similarity_matrix(cls, embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
        """Compared on the identity features a 64-px image shows, weighted by the estimator's held-out
        reliability (`facegen.synthface.estimator.observable_identity_similarity`)."""
        from facegen.synthface.estimator import load_estimator

        return load_estimator().identity_similarity(embeddings, references)


class SynthfaceEmotion(_BatchedSynthface, EmotionBackend):
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
