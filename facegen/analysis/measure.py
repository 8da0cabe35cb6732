"""Measure a batch of generated images: head pose, landmarks, emotion and identity embedding per image.

The one measuring path of `facegen verify` (a second pass over finished tars) and of the in-loop
verification inside the generation actors (manifest `verify:`, right after decoding):

    estimators = Estimators.load(pose="synthface", landmarks="synthface", emotion="synthface", identity="synthface")
    found = measure_faces(images, estimators)          # one FaceMeasurement per image
    nme = landmark_nme(measured_points, target_points)  # (B,) vs the landmarks the image was made from

Backends that can measure a whole batch in one pass do it in ``prepare_batch`` (the synthface proxy
runs its CNN once per batch); emotion crops go to ``EmotionBackend.predict`` as one batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from facegen.analysis.base import EmotionBackend, EmotionEstimate, IdentityBackend, LandmarkBackend, unknown_emotion
from facegen.analysis.registry import get_backend

#: Outer eye corners (image-left, image-right) for the NME normaliser.
EYE_OUTER = (33, 263)


@dataclass
class Estimators:
    """Loaded backends per attribute; None = that attribute is not measured. `pose` and `landmarks` are
    both landmark backends (pose = `head_pose` of the detected landmarks); the same name loads once."""

    pose: LandmarkBackend | None = None
    landmarks: LandmarkBackend | None = None
    emotion: EmotionBackend | None = None
    identity: IdentityBackend | None = None

    @classmethod
    def load(
        cls,
        *,
        pose: str = "none",
        landmarks: str = "none",
        emotion: str = "none",
        identity: str = "none",
        models_dir: str | Path | None = None,
    ) -> "Estimators":
        """Build the named backends (``none`` = not measured); weights come from `models_dir`."""
        cache: dict[tuple[str, str], object] = {}

        def load(name: str, kind: str):  # type: ignore[no-untyped-def]
            if name == "none":
                return None
            if (kind, name) not in cache:
                cache[(kind, name)] = get_backend(name, kind=kind, models_dir=models_dir)
            return cache[(kind, name)]

        return cls(load(pose, "landmarks"), load(landmarks, "landmarks"), load(emotion, "emotion"), load(identity, "identity"))  # type: ignore[arg-type]

    def detectors(self) -> list[LandmarkBackend]:
        """The distinct landmark backends (pose and landmarks may share one)."""
        out: list[LandmarkBackend] = []
        for backend in (self.landmarks, self.pose):
            if backend is not None and all(backend is not b for b in out):
                out.append(backend)
        return out

    def close(self) -> None:
        seen: list[object] = []
        for backend in (self.pose, self.landmarks, self.emotion, self.identity):
            if backend is not None and all(backend is not b for b in seen):
                seen.append(backend)
                backend.close()


@dataclass
class FaceMeasurement:
    """What the estimators read off one image. NaN / None / class -1 where nothing was measured."""

    face_found: bool
    yaw: float = math.nan
    pitch: float = math.nan
    roll: float = math.nan
    landmarks: np.ndarray | None = None  # (478, 3) normalised to the image (MediaPipe convention)
    emotion: EmotionEstimate = field(default_factory=unknown_emotion)
    embedding: np.ndarray | None = None  # L2-normalised
    error: str = ""  # why nothing was measured ("" when a face was found)


def measure_faces(images: Sequence[np.ndarray], estimators: Estimators) -> list[FaceMeasurement]:
    """One :class:`FaceMeasurement` per RGB uint8 image (H, W, 3), in order.

    A face is "found" when every landmark backend in use detects one (with none in use, when the
    identity backend embeds one). Emotion is predicted on all found faces in one batch: the whole image
    for backends that read it (``reads_full_image``), else a tight crop around the landmarks.
    """
    from facegen.analysis.align import box_crop
    from facegen.analysis.analyze import EMOTION_CROP_MARGIN
    from facegen.analysis.headpose import head_pose

    images = [np.ascontiguousarray(img) for img in images]
    for backend in {id(b): b for b in (*estimators.detectors(), estimators.emotion, estimators.identity) if b is not None}.values():
        backend.prepare_batch(images)
    out: list[FaceMeasurement] = []
    crops: list[np.ndarray] = []
    crop_rows: list[int] = []
    for i, image in enumerate(images):
        faces = {id(b): b.detect(image) for b in estimators.detectors()}
        missing = [b.name for b in estimators.detectors() if faces[id(b)] is None]
        if missing:
            out.append(FaceMeasurement(False, error=f"{missing[0]} found no face"))
            continue
        m = FaceMeasurement(True)
        face = faces[id(estimators.landmarks)] if estimators.landmarks is not None else None
        pose_face = faces[id(estimators.pose)] if estimators.pose is not None else None
        if pose_face is not None:
            pose = head_pose(pose_face)
            m.yaw, m.pitch, m.roll = float(pose.yaw), float(pose.pitch), float(pose.roll)
        if face is not None:
            m.landmarks = np.asarray(face.points, np.float32).reshape(-1, 3)
        any_face = face if face is not None else pose_face
        if estimators.identity is not None:
            emb = estimators.identity.embed(image, any_face)
            m.embedding = None if emb is None else np.asarray(emb, np.float32)  # None: no face to embed
        if estimators.emotion is not None:
            if getattr(estimators.emotion, "reads_full_image", False) or any_face is None:
                crops.append(image)
            else:
                crops.append(box_crop(image, any_face, estimators.emotion.crop_size, EMOTION_CROP_MARGIN)[0])
            crop_rows.append(i)
        out.append(m)
    if crops and estimators.emotion is not None:
        for i, estimate in zip(crop_rows, estimators.emotion.predict(crops)):
            out[i].emotion = estimate
    return out


def landmark_nme(measured: np.ndarray, planned: np.ndarray) -> np.ndarray:
    """(B,) mean 2D point distance / planned outer-eye-corner distance, for (B, 478, 2|3) sets."""
    m, p = np.asarray(measured, np.float64)[..., :2], np.asarray(planned, np.float64)[..., :2]
    iod = np.linalg.norm(p[:, EYE_OUTER[0]] - p[:, EYE_OUTER[1]], axis=-1)
    return np.linalg.norm(m - p, axis=-1).mean(-1) / np.maximum(iod, 1e-9)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (B, D) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


__all__ = ["EYE_OUTER", "Estimators", "FaceMeasurement", "cosine", "landmark_nme", "measure_faces"]


class EstimatorChoiceError(ValueError):
    """An estimator choice that cannot work: `attribute` names it, the message says what to do."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


#: attribute -> the registry kind of the backends that measure it
ATTRIBUTE_KINDS = {"pose": "landmarks", "landmarks": "landmarks", "emotion": "emotion", "identity": "identity"}


def resolve_estimators(
    requested: dict[str, str], *, synthface: bool, checked: dict[str, bool], models_dir: str | Path | None = None
) -> tuple[dict[str, str], Path]:
    """Concrete backend names per attribute (`auto` resolved) and the models folder, with every named
    backend's weights present. `auto`: synthface for synthface models; else mediapipe (pose, landmarks),
    the first of emonet / hsemotion with weights (emotion), arcface with weights (identity), else none --
    an error when `checked` says a tolerance needs that attribute. Raises EstimatorChoiceError."""
    from facegen.analysis.models import resolve_models_dir
    from facegen.analysis.registry import backend_class
    from facegen.errors import FacegenError

    models = resolve_models_dir(str(models_dir) if models_dir else None)

    def have(kind: str, name: str) -> bool:
        return all(f.locate(models) for f in backend_class(name, kind).model_files())

    auto = {
        "pose": "synthface" if synthface else "mediapipe",
        "landmarks": "synthface" if synthface else "mediapipe",
        "emotion": "synthface" if synthface else next((n for n in ("emonet", "hsemotion") if have("emotion", n)), "none"),
        "identity": "synthface" if synthface else ("arcface" if have("identity", "arcface") else "none"),
    }
    names: dict[str, str] = {}
    for attribute, kind in ATTRIBUTE_KINDS.items():
        name = requested.get(attribute, "none")
        if name == "auto":
            name = auto[attribute]
            if name == "none" and checked.get(attribute):
                raise EstimatorChoiceError(
                    attribute,
                    f"auto found no {attribute} estimator weights in {models} but a tolerance checks {attribute}; put "
                    "the weights there (`facegen weights check`), name an estimator, or turn that tolerance off",
                )
        try:
            for f in backend_class(name, kind).model_files():
                f.require(models)
        except FacegenError as exc:
            raise EstimatorChoiceError(attribute, str(exc)) from None
        names[attribute] = name
    return names, models


def estimator_weights(names: dict[str, str], models_dir: str | Path | None = None) -> dict[str, list[dict[str, str]]]:
    """Per attribute, the weight files its resolved backend loads (name + sha256): what a run records so
    that other weights under the same estimator names make a different run."""
    from facegen.analysis.models import resolve_models_dir, weights_digest
    from facegen.analysis.registry import backend_class

    models = resolve_models_dir(str(models_dir) if models_dir else None)
    out: dict[str, list[dict[str, str]]] = {}
    for attribute, name in names.items():
        files = []
        for f in backend_class(name, ATTRIBUTE_KINDS[attribute]).model_files():
            path = f.locate(models)
            if path is not None:
                files.append({"file": path.name, "sha256": weights_digest(path)})
        out[attribute] = files
    return out


def synthface_weights_path(names: dict[str, str]) -> str | None:
    """The synthface estimator file these estimators would load ($FACEGEN_SYNTHFACE_ESTIMATOR or the shipped
    one; checked readable), or None when none of them is synthface."""
    if "synthface" not in names.values():
        return None
    from facegen.synthface.estimator import configured_weights_path, load_estimator

    load_estimator()  # an unreadable file is a one-line error on the driver, not a failure in every actor
    return str(configured_weights_path().resolve())


def pin_synthface_weights(path: str) -> None:
    """Make this process's synthface backends load `path` (an actor measures with the driver's choice)."""
    from facegen.synthface.estimator import ESTIMATOR_ENV, configured_weights_path

    if str(configured_weights_path().resolve()) != path:
        os.environ[ESTIMATOR_ENV] = path


__all__ += ["ATTRIBUTE_KINDS", "EstimatorChoiceError", "estimator_weights", "pin_synthface_weights", "resolve_estimators",
            "synthface_weights_path"]
