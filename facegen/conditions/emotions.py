"""Emotion condition vectors: per-class valence/arousal priors and 8-class probability vectors.

The emotion branch of FaceCrafter takes (valence, arousal, p_neutral, ..., p_contempt) — 10 numbers,
class order `facegen.labels.EMOTION_NAMES`. When no exemplar bank supplies measured values, the
planner draws V/A from `VA_PRIOR` and uses `peaked_probs` for the class vector.

`VA_PRIOR` — APPROXIMATE, hand-placed values, not fitted to any data file:
  * positions follow Russell's circumplex model of affect (Russell 1980, J. Pers. Soc. Psychol.
    39(6)) with valence and arousal scaled to [-1, 1];
  * they were sanity-checked against the per-category V/A clouds plotted for AffectNet
    (Mollahosseini et al. 2017, IEEE TAC), whose annotations use the same [-1, 1] scale: happy
    high valence / mild arousal; sad negative valence / low arousal; fear, anger high arousal with
    negative valence; surprise high arousal near-neutral valence; contempt mildly negative.
  * the stds are deliberately moderate so sampled values stay inside each class's region.
Override any row per manifest (`targets.valence_arousal.<class>`); measured bank values win anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegen.labels import EMOTION_NAMES, EMOTION_VECTOR_DIM, NUM_EMOTIONS


@dataclass(frozen=True)
class VAPrior:
    valence: float
    arousal: float
    valence_std: float
    arousal_std: float


VA_PRIOR: dict[str, VAPrior] = {
    "neutral": VAPrior(0.00, 0.00, 0.10, 0.10),
    "happy": VAPrior(0.70, 0.25, 0.15, 0.20),
    "sad": VAPrior(-0.60, -0.25, 0.15, 0.20),
    "surprise": VAPrior(0.15, 0.65, 0.25, 0.15),
    "fear": VAPrior(-0.55, 0.60, 0.15, 0.15),
    "disgust": VAPrior(-0.65, 0.35, 0.15, 0.20),
    "anger": VAPrior(-0.60, 0.55, 0.15, 0.20),
    "contempt": VAPrior(-0.45, 0.20, 0.15, 0.20),
}

#: Mass kept on the target class by `peaked_probs`.
DEFAULT_PEAK = 0.85
#: Width (in V/A units) of the similarity kernel spreading the remaining mass to nearby classes.
SPREAD_WIDTH = 0.5


def prior_table(overrides: dict[str, dict[str, float | None]] | None = None) -> np.ndarray:
    """(8, 4) float64 table [valence, arousal, valence_std, arousal_std] with overrides applied."""
    table = np.array(
        [[VA_PRIOR[n].valence, VA_PRIOR[n].arousal, VA_PRIOR[n].valence_std, VA_PRIOR[n].arousal_std] for n in EMOTION_NAMES],
        dtype=np.float64,
    )
    for name, fields in (overrides or {}).items():
        row = EMOTION_NAMES.index(name)
        for col, key in enumerate(("valence", "arousal", "valence_std", "arousal_std")):
            if fields.get(key) is not None:
                table[row, col] = float(fields[key])
    return table


def peaked_probs(peak: float = DEFAULT_PEAK, table: np.ndarray | None = None) -> np.ndarray:
    """(8, 8) float32: row c is the class vector used for target class c.

    Row c puts `peak` on class c and spreads 1 - peak over the other classes in proportion to
    exp(-d^2 / (2 w^2)), d = distance between the class means in the V/A plane, so e.g. "fear"
    leaks mostly to "surprise"/"anger", like a real classifier's soft output. Rows sum to 1.
    """
    if not 0.0 < peak <= 1.0:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    table = prior_table() if table is None else table
    means = table[:, :2]
    d2 = ((means[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * SPREAD_WIDTH**2))
    np.fill_diagonal(kernel, 0.0)
    spread = kernel / kernel.sum(axis=1, keepdims=True) * (1.0 - peak)
    probs = spread + np.eye(NUM_EMOTIONS) * peak
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32)


def sample_valence_arousal(classes: np.ndarray, rng: np.random.Generator, table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (valence, arousal) float32 drawn from each row's class prior, clipped to [-1, 1]."""
    table = prior_table() if table is None else table
    rows = table[np.asarray(classes, dtype=np.int64)]
    noise = rng.standard_normal((len(rows), 2))
    valence = np.clip(rows[:, 0] + rows[:, 2] * noise[:, 0], -1.0, 1.0)
    arousal = np.clip(rows[:, 1] + rows[:, 3] * noise[:, 1], -1.0, 1.0)
    return valence.astype(np.float32), arousal.astype(np.float32)


def emotion_vectors(valence: np.ndarray, arousal: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(B, 10) float32 condition vectors: valence, arousal, then the 8 probabilities."""
    out = np.empty((len(valence), EMOTION_VECTOR_DIM), dtype=np.float32)
    out[:, 0] = valence
    out[:, 1] = arousal
    out[:, 2:] = probs
    return out


def class_index(name_or_index: str | int) -> int:
    """'Happy' / 'happy' / 1 -> 1; raises ValueError for anything else."""
    if isinstance(name_or_index, (int, np.integer)) and 0 <= int(name_or_index) < NUM_EMOTIONS:
        return int(name_or_index)
    if isinstance(name_or_index, str) and name_or_index.strip().lower() in EMOTION_NAMES:
        return EMOTION_NAMES.index(name_or_index.strip().lower())
    raise ValueError(f"{name_or_index!r} is not an emotion class ({', '.join(EMOTION_NAMES)} or 0..{NUM_EMOTIONS - 1})")
