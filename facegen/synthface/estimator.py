"""The synthface proxy estimator: one small CNN that measures a synthface image's generative parameters.

It recovers yaw / pitch / roll, the 9 expression parameters, the 8-class emotion (+ valence / arousal)
and the identity parameters, from which it derives the domain's 512-d identity embedding through the
same fixed projection the renderer uses. It is the measuring instrument of `facegen verify` on
synthface (analysis backend ``synthface``), so it is trained on renders with blur / noise / JPEG
augmentation (generated images are softer than renders) and its accuracy on fresh renders of held-out
identities is reported in its build info.

Weights ship as ``facegen/synthface/data/estimator.safetensors`` (+ ``estimator.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegen.labels import NUM_EMOTIONS
from facegen.synthface.params import (
    EXPRESSION_DIM,
    IDENTITY_DIM,
    embedding_projection,
    standardize_identity,
)

POSE_SCALE = 30.0  # degrees per output unit
WEIGHTS_FILE = "estimator.safetensors"
INFO_FILE = "estimator.json"
#: Output layout: pose 3, expression 9, emotion logits 8, V/A 2, identity 23.
HEADS = {"pose": 3, "expression": EXPRESSION_DIM, "emotion": NUM_EMOTIONS, "va": 2, "identity": IDENTITY_DIM}


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


STEMS = ("strided", "full")


class SynthfaceEstimator(nn.Module):
    """64x64 RGB in [0, 1] -> dict of head outputs (see HEADS).

    `stem="strided"` (the first estimator, ~5 GMAC per batch of 64) halves the resolution in its first
    convolution; `stem="full"` first convolves at 64x64 (24 channels), then strides, so features a
    pixel wide (brows, lip gap) reach the deeper layers (~1.4x the training step at width 48, measured).
    """

    def __init__(self, width: int = 48, stem: str = "strided") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        w = width
        first = [*_conv(3, 32, stride=2)] if stem == "strided" else [*_conv(3, 24), *_conv(24, 32, stride=2)]
        self.features = nn.Sequential(
            *first,  # 32x32
            *_conv(32, w), nn.MaxPool2d(2),  # 16x16
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),  # 8x8
            *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d(2),  # 4x4
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 512), nn.ReLU(inplace=True))
        self.out = nn.Linear(512, sum(HEADS.values()))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.out(self.fc(self.features(images - 0.5)))
        out, i = {}, 0
        for name, n in HEADS.items():
            out[name] = y[:, i : i + n]
            i += n
        return out


@dataclass(frozen=True)
class Measurement:
    """What the estimator reads off a batch of images (numpy, one row per image)."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    expression: np.ndarray  # (B, 9)
    emotion_probs: np.ndarray  # (B, 8)
    valence: np.ndarray
    arousal: np.ndarray
    identity_features: np.ndarray  # (B, 23) standardised identity parameters
    embedding: np.ndarray  # (B, 512) L2-normalised

    @property
    def emotion(self) -> np.ndarray:
        return self.emotion_probs.argmax(1)


def embedding_from_features(features: np.ndarray) -> np.ndarray:
    z = np.asarray(features, np.float64) @ embedding_projection()
    return (z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, 64, 64) in [0, 1] (resized if needed)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != 64 or x.shape[-2] != 64:
        x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    return x


def features_from_embedding(embeddings: np.ndarray) -> np.ndarray:
    """(..., 512) identity embeddings -> (..., 23) standardised identity features, up to a positive scale
    per row (the projection has full row rank, so least squares inverts it; L2 normalisation lost the scale)."""
    return np.asarray(embeddings, np.float64) @ np.linalg.pinv(embedding_projection())


def observable_identity_similarity(
    embeddings: np.ndarray, references: np.ndarray, reliability: np.ndarray | None
) -> np.ndarray:
    """(N, M) identity similarity of measured `embeddings` to reference embeddings, on what a 64-px image shows.

    Some identity parameters move the mesh by under a pixel (nose width, eye spacing, ...): no estimator
    reads them, yet they weigh as much as skin tone in the domain's embedding, so a plain cosine compares
    the measured face with noise. Like a face-recognition gallery, which is embedded by the same network
    as the probe, both sides are taken to the identity features and weighted by `reliability` (the
    estimator's held-out R^2 per feature) before the cosine. `reliability=None` is the plain cosine.
    """
    a, b = np.asarray(embeddings, np.float64), np.asarray(references, np.float64)
    if reliability is None:
        a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return a @ b.T
    w = np.sqrt(np.clip(np.asarray(reliability, np.float64), 0.0, 1.0))
    fa, fb = features_from_embedding(a) * w, features_from_embedding(b) * w
    fa /= np.maximum(np.linalg.norm(fa, axis=-1, keepdims=True), 1e-12)
    fb /= np.maximum(np.linalg.norm(fb, axis=-1, keepdims=True), 1e-12)
    return fa @ fb.T


def identity_reliability(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-feature R^2 of predicted vs true standardised identity features, clipped to [0, 1]."""
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    r2 = 1 - ((predicted - truth) ** 2).mean(0) / np.maximum(truth.var(0), 1e-12)
    return np.clip(r2, 0.0, 1.0)


class EstimatorRunner:
    """A loaded estimator in eval mode; `measure(images)` in batches; `identity_similarity` compares
    measured embeddings with references on the identity features it can read (see
    :func:`observable_identity_similarity`; plain cosine when the weights carry no reliability)."""

    def __init__(self, model: SynthfaceEstimator, batch_size: int = 256, reliability: np.ndarray | None = None) -> None:
        self.model = model.eval()
        self.batch_size = batch_size
        self.reliability = None if reliability is None else np.asarray(reliability, np.float64)

    def identity_similarity(self, embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
        """(N, M) similarity of measured embeddings (N, 512) to reference embeddings (M, 512)."""
        return observable_identity_similarity(embeddings, references, self.reliability)

    @torch.no_grad()
    def measure(self, images: np.ndarray) -> Measurement:
        outs: dict[str, list[np.ndarray]] = {k: [] for k in HEADS}
        for i in range(0, len(images), self.batch_size):
            o = self.model(to_tensor(images[i : i + self.batch_size]))
            for k in HEADS:
                outs[k].append(o[k].float().numpy())
        cat = {k: np.concatenate(v) if v else np.zeros((0, HEADS[k]), np.float32) for k, v in outs.items()}
        pose = cat["pose"] * POSE_SCALE
        logits = cat["emotion"] - cat["emotion"].max(1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return Measurement(
            yaw=pose[:, 0], pitch=pose[:, 1], roll=pose[:, 2],
            expression=cat["expression"], emotion_probs=probs.astype(np.float32),
            valence=np.clip(cat["va"][:, 0], -1, 1), arousal=np.clip(cat["va"][:, 1], -1, 1),
            identity_features=cat["identity"], embedding=embedding_from_features(cat["identity"]),
        )


#: Environment variable naming other estimator weights (a `train-estimator --out` folder's safetensors).
ESTIMATOR_ENV = "FACEGEN_SYNTHFACE_ESTIMATOR"


def shipped_weights_path() -> Path:
    return Path(str(resources.files("facegen.synthface").joinpath("data", WEIGHTS_FILE)))


def configured_weights_path() -> Path:
    """The estimator `facegen verify` uses: $FACEGEN_SYNTHFACE_ESTIMATOR if set, else the shipped one."""
    override = os.environ.get(ESTIMATOR_ENV)
    return Path(override) if override else shipped_weights_path()


def load_estimator(path: str | None = None) -> EstimatorRunner:
    """The configured estimator (`configured_weights_path`), or the one at `path`, loaded from safetensors
    (cached per file)."""
    from facegen.errors import FacegenError

    weights = Path(path) if path else configured_weights_path()
    if not weights.is_file():
        where = f"{weights} (${ESTIMATOR_ENV})" if not path and os.environ.get(ESTIMATOR_ENV) else str(weights)
        raise FacegenError("synthface estimator weights missing; rebuild with `make synthface-estimator`", where=where)
    from safetensors import SafetensorError

    try:
        return _load_estimator_file(str(weights.resolve()))
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:  # bad header, wrong shapes, bad JSON
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FacegenError(f"not a synthface estimator ({type(exc).__name__}: {first}); rebuild it with "
                           "`make synthface-estimator` or point elsewhere", where=str(weights)) from None


@lru_cache(maxsize=2)
def _load_estimator_file(weights: str) -> EstimatorRunner:
    from safetensors.torch import load_file

    info_path = Path(weights).with_name(INFO_FILE)
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    model = SynthfaceEstimator(info.get("width", 48), info.get("stem", "strided"))
    model.load_state_dict({k: v.float() for k, v in load_file(weights).items()})
    return EstimatorRunner(model, reliability=info.get("identity_reliability"))


# ---- training ---------------------------------------------------------------------------------


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur, noise and brightness jitter so generated (softer) images are measured like renders."""
    b = x.shape[0]
    sigma = torch.rand(b, generator=generator) * 1.2
    k = torch.arange(-2, 3, dtype=torch.float32)
    kernels = torch.exp(-(k[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)
    out = x.reshape(1, b * 3, *x.shape[-2:])
    kx = kernels.repeat_interleave(3, 0)[:, None, None, :]
    ky = kernels.repeat_interleave(3, 0)[:, None, :, None]
    out = F.conv2d(F.pad(out, (2, 2, 0, 0), mode="replicate"), kx, groups=b * 3)
    out = F.conv2d(F.pad(out, (0, 0, 2, 2), mode="replicate"), ky, groups=b * 3)
    out = out.reshape_as(x)
    noise = torch.randn(x.shape, generator=generator) * (torch.rand(b, 1, 1, 1, generator=generator) * 0.04)
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.2
    return (out * gain + noise).clamp(0, 1)


@dataclass
class Targets:
    pose: torch.Tensor  # (B, 3) / POSE_SCALE
    expression: torch.Tensor
    emotion: torch.Tensor  # (B,) long
    va: torch.Tensor
    identity: torch.Tensor  # standardised
    emotion_probs: torch.Tensor | None = None  # (B, 8) the domain's true posterior, when the labels carry it

    def take(self, idx: torch.Tensor) -> Targets:
        return Targets(self.pose[idx], self.expression[idx], self.emotion[idx], self.va[idx], self.identity[idx],
                       None if self.emotion_probs is None else self.emotion_probs[idx])


def targets_from_labels(table) -> Targets:
    """Targets from a synthface labels table (pyarrow)."""
    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    def dense(name: str, width: int) -> np.ndarray:
        return np.array(table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False),
                          np.float32).reshape(-1, width)

    pose = np.stack([col("yaw"), col("pitch"), col("roll")], 1).astype(np.float32) / POSE_SCALE
    return Targets(
        pose=torch.from_numpy(pose),
        expression=torch.from_numpy(dense("truth_expression", EXPRESSION_DIM)),
        emotion=torch.from_numpy(col("emotion").astype(np.int64)),
        va=torch.from_numpy(np.stack([col("valence"), col("arousal")], 1).astype(np.float32)),
        identity=torch.from_numpy(standardize_identity(dense("truth_identity", IDENTITY_DIM)).astype(np.float32)),
        emotion_probs=torch.from_numpy(dense("emotion_probs", NUM_EMOTIONS)) if "emotion_probs" in table.column_names else None,
    )


def estimator_loss(
    out: dict[str, torch.Tensor], t: Targets, soft_emotion: bool = False
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the heads' losses. `soft_emotion` fits the emotion head to the true posterior of the
    rendered expression (where the labels carry it) instead of the drawn class: a weak expression that
    the drawn class does not explain is then not a label to memorise."""
    emotion_target = t.emotion_probs if soft_emotion and t.emotion_probs is not None else t.emotion
    parts = {
        "pose": F.smooth_l1_loss(out["pose"], t.pose, beta=0.05) * 4,
        "expression": F.mse_loss(out["expression"], t.expression) * 2,
        "emotion": F.cross_entropy(out["emotion"], emotion_target) * 0.5,
        "va": F.mse_loss(out["va"], t.va),
        "identity": F.mse_loss(out["identity"], t.identity),
    }
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}
