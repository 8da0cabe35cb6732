"""synthface parameters: identity (shape + appearance), expression, emotion classes, nuisances.

Every synthface image is a deterministic function of one :class:`FaceSpec`. The spec is the known
truth the domain exists for: identity parameters (and the "ArcFace" embedding derived from them),
head pose in `facegen.conditions.pose`'s convention, expression parameters, the emotion class they
were drawn from with its valence / arousal and the Bayes posterior over the 8 classes, and the
nuisances no condition controls (light, background, scale and shift jitter).

Identity embedding: a fixed random projection (seeded, never trained) of the standardised identity
parameters, L2-normalised, so close identities have close embeddings and random identities have
cosine similarity ~N(0, 1/IDENTITY_DIM).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from facegen.conditions.emotions import VA_PRIOR
from facegen.labels import EMOTION_NAMES, ID_EMBED_DIM, NUM_EMOTIONS

#: Shape parameters, each in [-1, 1] (see `facegen.synthface.geometry` for what each one moves).
SHAPE_PARAMS: tuple[str, ...] = (
    "face_width", "face_length", "jaw_width", "chin_length", "nose_length", "nose_width", "nose_depth",
    "eye_spacing", "eye_size", "mouth_width", "lip_thickness", "brow_height", "cheek_fullness",
)
#: Appearance parameters, each in [0, 1] except the two flags (0 or 1).
APPEARANCE_PARAMS: tuple[str, ...] = (
    "skin_tone", "skin_warmth", "hair_darkness", "hair_warmth", "hairline", "hair_volume", "hair_length",
    "iris_color", "beard", "glasses",
)
IDENTITY_PARAMS: tuple[str, ...] = SHAPE_PARAMS + APPEARANCE_PARAMS
IDENTITY_DIM = len(IDENTITY_PARAMS)

#: Expression parameters (a continuous deformation model of the mesh; roughly in [-1, 1]).
EXPRESSION_PARAMS: tuple[str, ...] = (
    "mouth_open", "smile", "mouth_stretch", "smirk", "upper_lip_raise",
    "brow_raise", "brow_inner_up", "brow_furrow", "eye_open",
)
EXPRESSION_DIM = len(EXPRESSION_PARAMS)

#: Mean expression of each emotion class at full intensity (rows follow EMOTION_NAMES).
EMOTION_EXPRESSIONS = np.array(
    [
        # open smile stretch smirk lipraise browraise inner furrow eyeopen
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # neutral
        [0.30, 1.00, 0.40, 0.00, 0.00, 0.10, 0.00, 0.00, -0.40],  # happy
        [0.00, -0.80, 0.00, 0.00, 0.00, 0.00, 0.90, 0.20, -0.40],  # sad
        [1.00, 0.00, -0.30, 0.00, 0.00, 1.00, 0.30, 0.00, 0.90],  # surprise
        [0.50, -0.30, 0.80, 0.00, 0.00, 0.50, 0.80, 0.30, 1.00],  # fear
        [0.10, -0.40, 0.10, 0.00, 1.00, -0.20, 0.00, 0.70, -0.60],  # disgust
        [-0.30, -0.30, -0.30, 0.00, 0.20, -0.40, 0.00, 1.00, 0.30],  # anger
        [0.00, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00, 0.10, -0.10],  # contempt
    ],
    dtype=np.float64,
)
#: Intensity range of a non-neutral expression and the per-parameter noise (classes overlap a little).
INTENSITY_RANGE = (0.45, 1.0)
EXPRESSION_NOISE = 0.10

#: Pose ranges the training renders cover (a little beyond the product's +-60 / +-30 / +-25).
POSE_RANGES = {"yaw": 65.0, "pitch": 33.0, "roll": 28.0}

#: Seed of the fixed identity -> embedding projection (part of the domain's definition).
EMBEDDING_SEED = 20250611
#: Held-out identities start here (training renders use identity indices below it).
HELDOUT_START = 1_000_000


@dataclass(frozen=True)
class Nuisance:
    """What no condition controls: light direction, background colour, framing jitter."""

    light_azimuth: float  # degrees, + = light from image right
    light_elevation: float  # degrees, + = light from above
    background: tuple[float, float, float]  # RGB in [0, 1]
    scale: float  # multiplicative face-size jitter
    shift: tuple[float, float]  # (dx, dy) in image units


@dataclass(frozen=True)
class FaceSpec:
    """Everything that determines one synthface image."""

    identity: np.ndarray  # (IDENTITY_DIM,)
    expression: np.ndarray  # (EXPRESSION_DIM,)
    yaw: float
    pitch: float
    roll: float
    nuisance: Nuisance


def identity_params(index: int, domain_seed: int = 0) -> np.ndarray:
    """The identity parameter vector of identity `index` (deterministic)."""
    rng = np.random.default_rng([int(domain_seed), 7, int(index)])
    shape = rng.uniform(-1.0, 1.0, len(SHAPE_PARAMS))
    appearance = rng.uniform(0.0, 1.0, len(APPEARANCE_PARAMS))
    appearance[-2] = float(rng.random() < 0.25)  # beard
    appearance[-1] = float(rng.random() < 0.20)  # glasses
    return np.concatenate([shape, appearance])


def standardize_identity(params: np.ndarray) -> np.ndarray:
    """Identity parameters -> zero-mean, unit-variance features (the projection's input)."""
    p = np.asarray(params, dtype=np.float64)
    n_shape = len(SHAPE_PARAMS)
    shape = p[..., :n_shape] / np.sqrt(1 / 3)  # U(-1, 1)
    appearance = (p[..., n_shape:-2] - 0.5) / np.sqrt(1 / 12)  # U(0, 1)
    flags = (p[..., -2:] - np.array([0.25, 0.20])) / np.sqrt(np.array([0.25 * 0.75, 0.2 * 0.8]))
    return np.concatenate([shape, appearance, flags], axis=-1)


@lru_cache(maxsize=1)
def embedding_projection() -> np.ndarray:
    """The fixed (IDENTITY_DIM, 512) random projection defining the domain's identity embedding."""
    rng = np.random.default_rng(EMBEDDING_SEED)
    proj = rng.standard_normal((IDENTITY_DIM, ID_EMBED_DIM)) / np.sqrt(ID_EMBED_DIM)
    proj.setflags(write=False)
    return proj


def identity_embedding(params: np.ndarray) -> np.ndarray:
    """(..., IDENTITY_DIM) identity parameters -> (..., 512) L2-normalised float32 embeddings."""
    z = standardize_identity(params) @ embedding_projection()
    return (z / np.linalg.norm(z, axis=-1, keepdims=True)).astype(np.float32)


def identity_from_features(features: np.ndarray) -> np.ndarray:
    """Inverse of `standardize_identity` (flags stay continuous)."""
    f = np.asarray(features, dtype=np.float64)
    n_shape = len(SHAPE_PARAMS)
    shape = np.clip(f[..., :n_shape] * np.sqrt(1 / 3), -1, 1)
    appearance = np.clip(f[..., n_shape:-2] * np.sqrt(1 / 12) + 0.5, 0, 1)
    flags = np.clip(f[..., -2:] * np.sqrt(np.array([0.25 * 0.75, 0.2 * 0.8])) + np.array([0.25, 0.20]), 0, 1)
    return np.concatenate([shape, appearance, flags], axis=-1)


def identity_from_embedding(embedding: np.ndarray) -> np.ndarray:
    """Least-squares inverse of `identity_embedding` up to scale (standardised features, unit norm)."""
    proj = embedding_projection()
    feats = np.asarray(embedding, dtype=np.float64) @ np.linalg.pinv(proj)
    return feats / np.linalg.norm(feats, axis=-1, keepdims=True)


def sample_expression(emotion: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Expression parameters drawn from class `emotion`'s distribution, and the intensity used."""
    intensity = 0.0 if emotion == 0 else float(rng.uniform(*INTENSITY_RANGE))
    expr = intensity * EMOTION_EXPRESSIONS[emotion] + rng.normal(0.0, EXPRESSION_NOISE, EXPRESSION_DIM)
    return expr, intensity


def emotion_posterior(expression: np.ndarray) -> np.ndarray:
    """Bayes posterior over the 8 classes given expression parameters (uniform class prior).

    p(e | c) integrates the intensity over INTENSITY_RANGE (12-point quadrature); neutral has none.
    """
    e = np.atleast_2d(np.asarray(expression, dtype=np.float64))
    grid = np.linspace(*INTENSITY_RANGE, 12)
    log_lik = np.empty((e.shape[0], NUM_EMOTIONS))
    var = EXPRESSION_NOISE**2
    for c in range(NUM_EMOTIONS):
        scales = np.zeros(1) if c == 0 else grid
        means = scales[:, None] * EMOTION_EXPRESSIONS[c][None]  # (S, D)
        d2 = ((e[:, None, :] - means[None]) ** 2).sum(-1) / (2 * var)  # (N, S)
        log_lik[:, c] = -d2.min(1) + np.log(np.exp(-(d2 - d2.min(1, keepdims=True))).mean(1))
    log_lik -= log_lik.max(1, keepdims=True)
    post = np.exp(log_lik)
    post /= post.sum(1, keepdims=True)
    return post.astype(np.float32).reshape(np.shape(expression)[:-1] + (NUM_EMOTIONS,))


def valence_arousal(emotion: int, intensity: float, rng: np.random.Generator) -> tuple[float, float]:
    """V/A consistent with the class (the planner's circumplex table), scaled by intensity."""
    prior = VA_PRIOR[EMOTION_NAMES[emotion]]
    mid = sum(INTENSITY_RANGE) / 2
    k = 1.0 if emotion == 0 else intensity / mid
    v = k * prior.valence + rng.normal(0.0, 0.5 * prior.valence_std)
    a = k * prior.arousal + rng.normal(0.0, 0.5 * prior.arousal_std)
    return float(np.clip(v, -1, 1)), float(np.clip(a, -1, 1))


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    bg = rng.uniform(0.15, 0.85, 3)
    bg = 0.6 * bg + 0.4 * bg.mean()  # muted colours
    return Nuisance(
        light_azimuth=float(rng.uniform(-45, 45)),
        light_elevation=float(rng.uniform(-20, 40)),
        background=(float(bg[0]), float(bg[1]), float(bg[2])),
        scale=float(rng.uniform(0.93, 1.07)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
    )
