"""Emotion backend: HSEmotion (Savchenko) `enet_b0_8_va_mtl.onnx`, a lighter EfficientNet-B0 multi-task model.

Input N x 3 x 224 x 224 RGB, scaled to [0, 1] then ImageNet mean/std; output N x 10 = 8 expression
logits in HSEmotion's (AffectNet alphabetical) order, then valence, arousal. Classes are re-ordered to
`facegen.labels.EMOTION_NAMES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from facegen.analysis.align import resize_square
from facegen.analysis.base import EmotionBackend, EmotionEstimate, softmax
from facegen.analysis.models import ModelFile
from facegen.analysis.onnx_session import OnnxModel
from facegen.errors import FacegenError
from facegen.labels import EMOTION_NAMES

#: HSEmotion's 8-class output order.
HSEMOTION_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: facegen index i takes HSEmotion's output HSEMOTION_TO_FACEGEN[i].
HSEMOTION_TO_FACEGEN = tuple(HSEMOTION_CLASSES.index(name) for name in EMOTION_NAMES)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def to_facegen_order(values: np.ndarray) -> np.ndarray:
    """Re-order (..., 8) HSEmotion class values into EMOTION_NAMES order."""
    return np.asarray(values)[..., list(HSEMOTION_TO_FACEGEN)]


class HSEmotionONNX(EmotionBackend):
    name = "hsemotion"
    crop_size: ClassVar[int] = 224

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        self.model_path = Path(model_path)
        self.model = OnnxModel(self.model_path, expect_chw=(3, self.crop_size, self.crop_size), threads=threads)

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        return [
            ModelFile(
                cls.name, cls.kind, ("enet_b0_8_va_mtl.onnx", "hsemotion/enet_b0_8_va_mtl.onnx"),
                "HSEmotion: 8 emotions + valence/arousal (lighter than EmoNet)",
            )
        ]  # fmt: skip

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "HSEmotionONNX":
        path = options.pop("model_path", None) or cls.model_files()[0].require(models_dir)
        return cls(path, **options)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack([resize_square(c, self.crop_size) for c in crops]).astype(np.float32) / 255.0
        return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)

    def predict(self, crops: Sequence[np.ndarray]) -> list[EmotionEstimate]:
        if not crops:
            return []
        out = self.model.run(self.preprocess(crops))
        if out.ndim != 2 or out.shape[1] != 10:
            raise FacegenError(f"HSEmotion output is {out.shape}, expected (N, 10): use the *_va_mtl model", where=str(self.model_path))
        probs = to_facegen_order(softmax(out[:, :8])).astype(np.float32)
        val, aro = np.clip(out[:, 8], -1, 1), np.clip(out[:, 9], -1, 1)
        return [EmotionEstimate(p, float(v), float(a), int(np.argmax(p))) for p, v, a in zip(probs, val, aro)]
