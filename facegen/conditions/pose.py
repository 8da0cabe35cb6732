"""Head-pose convention shared by the planner (rotating landmarks) and the estimators (measuring pose).

Coordinates are MediaPipe's: x to the image right, y down, z away from the camera (right-handed).
Angles are degrees: + yaw turns the nose toward image right (+x), + pitch turns it up (-y), + roll
tilts the face clockwise in the image. ``R = Rz(roll) @ Rx(-pitch) @ Ry(-yaw)`` with the textbook
right-handed elementary rotations; `angles_from_matrix` inverts it exactly (|pitch| < 90).
"""

from __future__ import annotations

import numpy as np


def _rx(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def rotation_matrix(yaw, pitch, roll) -> np.ndarray:
    """Rotation matrices (..., 3, 3) for angles in degrees (scalars or arrays of one shape)."""
    y, p, r = (np.deg2rad(np.asarray(v, dtype=np.float64)) for v in (yaw, pitch, roll))
    return _rz(r) @ _rx(-p) @ _ry(-y)


def angles_from_matrix(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) in degrees from rotation matrices (..., 3, 3); inverse of `rotation_matrix`."""
    m = np.asarray(rotation, dtype=np.float64)
    pitch = -np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
    yaw = -np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    roll = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    return np.rad2deg(yaw), np.rad2deg(pitch), np.rad2deg(roll)


def rotate_landmarks(points: np.ndarray, yaw, pitch, roll, center: np.ndarray | None = None) -> np.ndarray:
    """Rotate landmark sets (..., N, 3) about `center` (default: each set's mean point).

    Angles broadcast over the leading dimensions, so a (B, 478, 3) batch takes (B,) angle arrays.
    """
    pts = np.asarray(points, dtype=np.float64)
    c = pts.mean(axis=-2, keepdims=True) if center is None else np.asarray(center, dtype=np.float64)
    rot = rotation_matrix(yaw, pitch, roll)  # (..., 3, 3)
    return (pts - c) @ np.swapaxes(rot, -1, -2) + c
