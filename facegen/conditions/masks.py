"""Face masks from the face-oval polygon of a landmark set, at any resolution.

A pixel is inside when its centre has a non-zero winding number with respect to the (ordered) face-oval
polygon, so a self-intersecting outline (strongly yawed faces) still fills instead of leaving holes.
"""

from __future__ import annotations

import numpy as np

from facegen.conditions import topology as topo


def face_mask(points: np.ndarray, size: int) -> np.ndarray:
    """bool (size, size) mask of the face oval of one landmark set (478, 2|3), normalised to [0, 1]."""
    pts = topo.check_landmarks(points, batched=False)
    return _fill_polygon(pts[topo.face_oval_polygon(), :2] * int(size), int(size))


def face_masks(points: np.ndarray, size: int) -> np.ndarray:
    """bool (B, size, size) masks for a batch of landmark sets (B, 478, 2|3)."""
    pts = topo.check_landmarks(points, batched=True)
    out = np.zeros((pts.shape[0], int(size), int(size)), dtype=bool)
    poly = topo.face_oval_polygon()
    for i in range(pts.shape[0]):
        out[i] = _fill_polygon(pts[i, poly, :2] * int(size), int(size))
    return out


def _fill_polygon(vertices: np.ndarray, size: int) -> np.ndarray:
    """Non-zero winding fill of a closed polygon (V, 2) in pixel units; pixel centres at i + 0.5."""
    if size < 1:
        raise ValueError(f"mask size must be >= 1, got {size}")
    a = vertices
    b = np.roll(vertices, -1, axis=0)
    y = np.arange(size)[:, None] + 0.5  # (S, 1) row centres
    ay, by = a[None, :, 1], b[None, :, 1]
    upward = (ay <= y) & (by > y)  # half-open rule: a vertex on a row counts once
    downward = (by <= y) & (ay > y)
    rows, edges = np.nonzero(upward | downward)
    ya, yb = a[edges, 1], b[edges, 1]
    x_cross = a[edges, 0] + (rows + 0.5 - ya) * (b[edges, 0] - a[edges, 0]) / (yb - ya)
    direction = np.where(upward[rows, edges], 1, -1).astype(np.int32)
    # A crossing at x adds its direction to every pixel centre left of it (j + 0.5 < x): a difference
    # array along each row, integrated with cumsum, gives every pixel's winding number.
    stop = np.clip(np.ceil(x_cross - 0.5), 0, size).astype(np.int64)
    diff = np.zeros((size, size + 1), dtype=np.int32)
    np.add.at(diff, (rows, np.zeros_like(stop)), direction)
    np.add.at(diff, (rows, stop), -direction)
    return np.cumsum(diff[:, :size], axis=1) != 0
