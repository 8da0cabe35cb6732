"""Choosing the ID image (the *partner*) for each target image of the same identity.

The generated (target) image supplies the latents, the landmark image, the emotion vector and the face
mask; the partner supplies only the ArcFace embedding. Rules (paper section 3.2):

- ``pretrain-lmk`` (and ``joint``): the partner differs from the target in pose (``|dyaw| + |dpitch| >=
  lmk_min_pose_deg``) *and* in expression (expression distance ``>= lmk_min_expression``) — "randomly
  selected to have different poses and facial expressions".
- ``pretrain-emo``: the partner shows another expression (other emotion class, or expression distance
  ``>= emo_min_expression``) with about the same pose (``|dyaw| + |dpitch| <= emo_max_pose_deg``).

Fallbacks, when an identity has no partner satisfying the rule for a target (each such target counts
once in :attr:`PairIndex.fallbacks`, reported at the start of training):

- LMK: first the other images that differ in pose *or* expression (all of them, drawn uniformly); if
  none, the single other image that differs most (pose degrees / lmk_min_pose_deg + expression distance /
  lmk_min_expression);
- EMO: the other image with another expression and the closest pose, else the other image with the
  closest pose;
- an identity with a single image pairs the image with itself (plain reconstruction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pydantic import BaseModel, ConfigDict, Field

from facegen.conditions.pose import rotation_matrix
from facegen.labels import NUM_LANDMARKS


class PairingConfig(BaseModel):
    """How the ID image (partner) is chosen for a target image of the same identity.

    Pose distance is ``|dyaw| + |dpitch|`` in degrees; expression distance is the mean point distance
    between pose-normalised landmark sets (centred, de-rotated, scaled to unit RMS radius).
    (Defined here, next to the rule, so `config` -> `pairs` and `data` -> `pairs` point one way.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lmk_min_pose_deg: float = Field(10.0, ge=0, description="LMK: partner pose differs by at least this ...")
    lmk_min_expression: float = Field(0.05, ge=0, description="... and its expression by at least this")
    emo_max_pose_deg: float = Field(10.0, ge=0, description="EMO: partner pose within this")
    emo_min_expression: float = Field(0.05, ge=0, description="EMO: expression distance at least this (or another emotion class)")


@dataclass(frozen=True)
class Labels:
    """``labels.parquet`` in memory: scalar columns in a frame, the list columns as dense arrays (row-aligned)."""

    frame: pd.DataFrame  # key, identity, yaw, pitch, roll, emotion, valence, arousal (sorted by key)
    embeddings: np.ndarray  # (N, 512) float32
    landmarks: np.ndarray  # (N, 478, 3) float32, normalised to the crop
    emotion_probs: np.ndarray  # (N, 8) float32

    def __len__(self) -> int:
        return len(self.frame)



def expression_descriptors(landmarks: np.ndarray, yaw, pitch, roll) -> np.ndarray:
    """Pose-normalised landmark sets (N, 478, 3): centred, rotated back to frontal, unit RMS radius."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, NUM_LANDMARKS, 3)
    centred = pts - pts.mean(axis=1, keepdims=True)
    rot = rotation_matrix(np.asarray(yaw), np.asarray(pitch), np.asarray(roll))  # (N, 3, 3)
    frontal = centred @ rot  # row vectors: p @ R == R^T p, undoing p' = R p
    radius = np.sqrt((frontal**2).sum(-1).mean(-1))[:, None, None]
    return (frontal / np.maximum(radius, 1e-8)).astype(np.float32)


def expression_distances(desc: np.ndarray) -> np.ndarray:
    """Pairwise mean point distance (N, N) between expression descriptors."""
    n = len(desc)
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        out[i] = np.linalg.norm(desc - desc[i], axis=-1).mean(-1)
    return out


@dataclass(frozen=True)
class PairIndex:
    """Partner candidates per target row in CSR form: row t may pair with ``partners[offsets[t]:offsets[t+1]]``."""

    offsets: np.ndarray  # int64 (N+1,)
    partners: np.ndarray  # int32
    fallbacks: int  # targets whose candidates came from a fallback rule

    def candidates(self, target: int) -> np.ndarray:
        return self.partners[self.offsets[target] : self.offsets[target + 1]]

    def choose(self, target: int, rng: np.random.Generator) -> int:
        cand = self.candidates(target)
        return int(cand[rng.integers(len(cand))])


def _group_candidates(
    rule: str, pose_d: np.ndarray, expr_d: np.ndarray, emotion: np.ndarray, cfg: PairingConfig
) -> tuple[list[np.ndarray], int]:
    n = len(pose_d)
    other = ~np.eye(n, dtype=bool)
    if rule == "lmk":
        pose_differs, expr_differs = pose_d >= cfg.lmk_min_pose_deg, expr_d >= cfg.lmk_min_expression
        valid = other & pose_differs & expr_differs
        either = other & (pose_differs | expr_differs)  # first fallback
    else:
        different = (emotion[:, None] != emotion[None, :]) | (expr_d >= cfg.emo_min_expression)
        valid = other & different & (pose_d <= cfg.emo_max_pose_deg)
    out, fallbacks = [], 0
    for t in range(n):
        idx = np.flatnonzero(valid[t])
        if len(idx) == 0:
            fallbacks += 1
            others = np.flatnonzero(other[t])
            if len(others) == 0:
                idx = np.array([t])
            elif rule == "lmk" and either[t].any():
                idx = np.flatnonzero(either[t])
            elif rule == "lmk":
                score = pose_d[t, others] / max(cfg.lmk_min_pose_deg, 1e-6) + expr_d[t, others] / max(cfg.lmk_min_expression, 1e-6)
                idx = others[[int(np.argmax(score))]]
            else:
                diff = others[(emotion[others] != emotion[t]) | (expr_d[t, others] >= cfg.emo_min_expression)]
                pool = diff if len(diff) else others
                idx = pool[[int(np.argmin(pose_d[t, pool]))]]
        out.append(idx)
    return out, fallbacks


def build_pair_index(labels: Labels, stage: str, cfg: PairingConfig) -> PairIndex:
    """Partner candidates for every row of `labels` under the stage's rule (`stages.STAGE_SPECS`)."""
    from facegen.train.stages import stage_spec

    rule = stage_spec(stage).pairing
    n = len(labels)
    if rule == "self":  # the ID condition comes from the target image itself (Arc2Face's training)
        return PairIndex(offsets=np.arange(n + 1, dtype=np.int64), partners=np.arange(n, dtype=np.int32), fallbacks=0)
    frame = labels.frame
    yaw = frame["yaw"].to_numpy(np.float64)
    pitch = frame["pitch"].to_numpy(np.float64)
    roll = frame["roll"].to_numpy(np.float64)
    emotion = frame["emotion"].to_numpy(np.int64)
    ident = frame["identity"].astype(str).to_numpy()
    per_target: list[np.ndarray | None] = [None] * n
    fallbacks = 0
    for _, rows in pd.Series(np.arange(n)).groupby(ident, sort=True):
        rows = rows.to_numpy()
        desc = expression_descriptors(labels.landmarks[rows], yaw[rows], pitch[rows], roll[rows])
        expr_d = expression_distances(desc)
        pose_d = np.abs(yaw[rows, None] - yaw[None, rows]) + np.abs(pitch[rows, None] - pitch[None, rows])
        cands, fb = _group_candidates(rule, pose_d, expr_d, emotion[rows], cfg)
        fallbacks += fb
        for t, c in zip(rows, cands):
            per_target[t] = rows[c].astype(np.int32)
    lengths = np.array([len(c) for c in per_target], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    partners = np.concatenate(per_target) if n else np.zeros(0, np.int32)
    return PairIndex(offsets=offsets, partners=partners.astype(np.int32), fallbacks=fallbacks)
