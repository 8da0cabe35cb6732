"""The neutral 3D face template and the geometry that makes landmark sets comparable.

Coordinates are MediaPipe-normalised (x right, y down, z away from the camera, z in x's unit; see
`facegen.conditions.pose`). Two normalisations are defined here and used everywhere:

* **canonical framing** (:func:`canonical_frame`): the 3D centroid of the 478 points goes to
  :data:`CANONICAL_CENTER` and the face is scaled so the RMS distance of its points from the centroid is
  :data:`CANONICAL_RMS_RADIUS`. Both are rotation-invariant, so posing a framed face keeps its size;
  the frontal template is then ~0.62 of the image tall (forehead top to chin), matching
  `facegen.analysis` crops (landmark box = 1/1.6 of the crop side).
* **frontal** (:func:`estimate_pose` / :func:`frontalize`): the face's own axes are fitted from its
  left/right symmetry: x = normal of the best mirror plane (a reflection Procrustes fit of every point
  onto its mirror counterpart, :func:`facegen.conditions.topology.mirror_indices`), pointing to the
  subject's left; y = eye-to-mouth direction (outer eye corners' midpoint to mouth corners' midpoint)
  orthogonalised against x, so pitch 0 means that line lies in the image plane; z = x cross y.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from facegen.conditions import topology as topo
from facegen.conditions.pose import angles_from_matrix, rotation_matrix

TEMPLATE_FILE = "neutral_template.npy"

#: Where the canonical framing puts the face's 3D centroid (x, y in [0, 1] image units; z centred).
CANONICAL_CENTER = np.array([0.5, 0.5, 0.0])
#: RMS distance of the 478 points from their centroid after canonical framing (image-width units).
CANONICAL_RMS_RADIUS = 0.20


@lru_cache(maxsize=1)
def neutral_template() -> np.ndarray:
    """The neutral frontal template (478, 3) float32, canonically framed; cached and read-only."""
    ref = resources.files("facegen.conditions").joinpath("data", TEMPLATE_FILE)
    with resources.as_file(ref) as path:
        arr = np.load(path, allow_pickle=False).astype(np.float32, copy=False)
    arr.setflags(write=False)
    return arr


def canonical_frame(points: np.ndarray) -> np.ndarray:
    """Centre and scale landmark sets (..., 478, 3) to the canonical framing (no rotation)."""
    pts = np.asarray(points, dtype=np.float64)
    centred = pts - pts.mean(axis=-2, keepdims=True)
    rms = np.sqrt((centred**2).sum(axis=-1).mean(axis=-1))[..., None, None]
    return centred * (CANONICAL_RMS_RADIUS / np.maximum(rms, 1e-12)) + CANONICAL_CENTER


def face_axes(
    points: np.ndarray, mirror: np.ndarray | None = None, fit_indices: np.ndarray | None = None
) -> np.ndarray:
    """Rotation (..., 3, 3) whose columns are the face's x, y, z axes in camera coordinates.

    ``points - centroid == frontal @ R.T``, i.e. the face is the frontal face rotated by R.
    ``fit_indices`` restricts the mirror-plane fit to those landmarks (default: all).
    """
    pts = np.asarray(points, dtype=np.float64)
    m = topo.mirror_indices() if mirror is None else np.asarray(mirror)
    idx = np.arange(pts.shape[-2]) if fit_indices is None else np.asarray(fit_indices)
    x = pts - pts.mean(axis=-2, keepdims=True)
    # Best reflection S (det -1) with S x_i ~= x_mirror(i); its -1 eigenvector is the mirror normal.
    cov = np.swapaxes(x[..., m[idx], :], -1, -2) @ x[..., idx, :]
    u, _, vt = np.linalg.svd(cov)
    d = -np.linalg.det(u @ vt)
    flip = np.ones(u.shape[:-2] + (3,))
    flip[..., 2] = d
    s = (u * flip[..., None, :]) @ vt
    _, vecs = np.linalg.eigh(np.eye(3) - 0.5 * (s + np.swapaxes(s, -1, -2)))
    nx = vecs[..., :, -1]
    across = pts[..., topo.LEFT_EYE_OUTER, :] - pts[..., topo.RIGHT_EYE_OUTER, :]
    nx = nx * np.sign((nx * across).sum(-1, keepdims=True))
    eyes = 0.5 * (pts[..., topo.LEFT_EYE_OUTER, :] + pts[..., topo.RIGHT_EYE_OUTER, :])
    mouth = 0.5 * (pts[..., topo.MOUTH_LEFT, :] + pts[..., topo.MOUTH_RIGHT, :])
    down = mouth - eyes
    ny = down - (down * nx).sum(-1, keepdims=True) * nx
    ny = ny / np.linalg.norm(ny, axis=-1, keepdims=True)
    nz = np.cross(nx, ny)
    return np.stack([nx, ny, nz], axis=-1)


def estimate_pose(points: np.ndarray, mirror: np.ndarray | None = None):
    """(yaw, pitch, roll) in degrees of landmark sets (..., 478, 3), in `pose.py`'s convention."""
    return angles_from_matrix(face_axes(points, mirror))


def frontalize(points: np.ndarray, mirror: np.ndarray | None = None) -> np.ndarray:
    """Un-rotate landmark sets (..., 478, 3) to frontal (via `pose.rotation_matrix`) and frame them."""
    pts = np.asarray(points, dtype=np.float64)
    yaw, pitch, roll = estimate_pose(pts, mirror)
    rot = rotation_matrix(yaw, pitch, roll)
    centred = pts - pts.mean(axis=-2, keepdims=True)
    return canonical_frame(centred @ rot)  # row-vector form of R^T p: undoes rotate_landmarks


def symmetrize(points: np.ndarray, mirror: np.ndarray | None = None) -> np.ndarray:
    """Average frontal, framed landmark sets with their own mirror image about x = CANONICAL_CENTER.x."""
    pts = np.asarray(points, dtype=np.float64)
    m = topo.mirror_indices() if mirror is None else np.asarray(mirror)
    reflected = pts[..., m, :].copy()
    reflected[..., 0] = 2 * CANONICAL_CENTER[0] - reflected[..., 0]
    return 0.5 * (pts + reflected)
