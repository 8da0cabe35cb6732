"""A small vectorised z-buffer triangle rasteriser (numpy, orthographic, flat shading).

Each triangle enumerates the pixel centres of its bounding box, keeps those inside (edge functions),
interpolates depth, and the nearest fragment per pixel wins (one lexsort). At the sizes synthface
renders (64-128 px, ~1,500 triangles) that is a few thousand fragments per image.
"""

from __future__ import annotations

import numpy as np


def rasterize(xy: np.ndarray, z: np.ndarray, triangles: np.ndarray, size: int) -> np.ndarray:
    """Index of the visible triangle per pixel (size, size) int32, -1 for none.

    `xy` (V, 2) are pixel coordinates (pixel (i, j) has its centre at x = j + 0.5, y = i + 0.5);
    `z` (V,) is depth, smaller = nearer.
    """
    tri_xy = xy[triangles]  # (T, 3, 2)
    x0 = np.ceil(tri_xy[..., 0].min(1) - 0.5).astype(np.int64).clip(0, size)
    x1 = np.floor(tri_xy[..., 0].max(1) - 0.5).astype(np.int64).clip(-1, size - 1)
    y0 = np.ceil(tri_xy[..., 1].min(1) - 0.5).astype(np.int64).clip(0, size)
    y1 = np.floor(tri_xy[..., 1].max(1) - 0.5).astype(np.int64).clip(-1, size - 1)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    counts = w * h
    total = int(counts.sum())
    out = np.full(size * size, -1, dtype=np.int32)
    if total == 0:
        return out.reshape(size, size)
    tri = np.repeat(np.arange(len(triangles)), counts)
    starts = np.cumsum(counts) - counts
    k = np.arange(total) - np.repeat(starts, counts)
    wt = w[tri]
    px = x0[tri] + k % wt
    py = y0[tri] + k // wt
    cx = px + 0.5
    cy = py + 0.5
    a, b, c = tri_xy[tri, 0], tri_xy[tri, 1], tri_xy[tri, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w0 = (b[:, 0] - cx) * (c[:, 1] - cy) - (b[:, 1] - cy) * (c[:, 0] - cx)
    w1 = (c[:, 0] - cx) * (a[:, 1] - cy) - (c[:, 1] - cy) * (a[:, 0] - cx)
    w2 = area - w0 - w1
    sign = np.sign(area)
    eps = -1e-9
    inside = (w0 * sign >= eps) & (w1 * sign >= eps) & (w2 * sign >= eps) & (np.abs(area) > 1e-12)
    if not inside.any():
        return out.reshape(size, size)
    tri, px, py = tri[inside], px[inside], py[inside]
    area, w0, w1, w2 = area[inside], w0[inside], w1[inside], w2[inside]
    zt = z[triangles[tri]]
    depth = (w0 * zt[:, 0] + w1 * zt[:, 1] + w2 * zt[:, 2]) / area
    pix = py * size + px
    order = np.lexsort((depth, pix))
    pix_sorted = pix[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    out[pix_sorted[first]] = tri[order[first]]
    return out.reshape(size, size)


def triangle_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals (T, 3), oriented toward the camera (-z)."""
    p = verts[triangles]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n *= -np.sign(n[:, 2:3] + 1e-12)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter an (H, W, C) float image by an integer factor."""
    if factor == 1:
        return image
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean((1, 3))
