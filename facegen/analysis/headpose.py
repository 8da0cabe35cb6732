"""Head pose (yaw, pitch, roll in degrees) from 3D face-mesh landmarks.

The measured points are matched to the neutral frontal template with a least-squares rotation
(Kabsch) over a subset of points that expressions barely move (nose, eye corners, forehead,
cheekbones), then converted with `facegen.conditions.pose.angles_from_matrix`: the same convention the
planner uses to rotate landmarks, so `measured == planned` for landmarks rotated by the planner.
"""

from __future__ import annotations

import numpy as np

from facegen.analysis.base import FaceLandmarks, HeadPose
from facegen.conditions.pose import angles_from_matrix

#: Mesh indices that stay put under expressions (no lips, jaw or brows).
STABLE_POINTS = (
    1, 4, 5, 6, 8, 9, 10, 151, 168, 195, 197,  # midline: nose tip/bridge, forehead
    33, 133, 362, 263,  # eye corners
    127, 356, 234, 454, 93, 323, 162, 389,  # face sides near the ears / temples
    116, 345, 50, 280, 205, 425,  # cheekbones and cheeks
)  # fmt: skip


def fit_rotation(template: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rotation R (3x3, det +1) minimising sum |R (t - mean t) - s (p - mean p)|^2 over any uniform scale s."""
    t = template - template.mean(0)
    p = points - points.mean(0)
    u, _, vt = np.linalg.svd(t.T @ p)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def head_pose_from_points(points_px: np.ndarray, template: np.ndarray) -> HeadPose:
    """Pose of (478, 3) isotropic landmark coordinates relative to a (478, 3) frontal template."""
    idx = list(STABLE_POINTS)
    rot = fit_rotation(np.asarray(template, np.float64)[idx], np.asarray(points_px, np.float64)[idx])
    yaw, pitch, roll = angles_from_matrix(rot)
    return HeadPose(float(yaw), float(pitch), float(roll))


def head_pose(face: FaceLandmarks, template: np.ndarray | None = None) -> HeadPose:
    """Pose of a detected face; `template` defaults to `facegen.conditions.template.neutral_template()`.

    A backend that measures pose directly (e.g. ``synthface``) attaches it as `face.pose`; it wins.
    """
    measured = getattr(face, "pose", None)
    if measured is not None:
        return measured
    if template is None:
        from facegen.conditions.template import neutral_template

        template = neutral_template()
    return head_pose_from_points(face.pixels(), template)
