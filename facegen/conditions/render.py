"""Landmark control images: pose a 3D landmark set, project it, and draw the face mesh.

Rendering is a vectorised numpy line rasteriser (no antialiasing, so output bytes depend only on the
input coordinates): every edge is sampled at <= 1 pixel steps, rounded to the nearest pixel centre and
stamped with a square brush. Regions are painted in `topology.DRAW_ORDER` into a label image that a
palette lookup turns into RGB, so overlaps resolve by draw order, never by write order.
Line widths scale with the image: tessellation ``max(1, round(size/256))``, contours
``max(1, round(2*size/256))`` pixels. Coordinates are normalised: (0, 0) is the top-left corner of the
image and (1, 1) the bottom-right; points outside are clipped away pixel by pixel.
"""

from __future__ import annotations

import numpy as np

from facegen.conditions import topology as topo
from facegen.conditions.pose import rotate_landmarks
from facegen.conditions.template import CANONICAL_CENTER, canonical_frame

#: Fraction of the image kept free around a posed face (see `posed_landmarks`).
FRAME_MARGIN = 0.03

_PALETTE = np.zeros((len(topo.DRAW_ORDER) + 1, 4), dtype=np.uint8)  # RGB + pad byte
for _i, _name in enumerate(topo.DRAW_ORDER):
    _PALETTE[_i + 1, :3] = topo.REGION_COLORS[_name]
_PALETTE_WORDS = _PALETTE.view(np.uint32).ravel()  # label -> packed pixel: one 4-byte gather per pixel


def line_widths(size: int) -> tuple[int, int]:
    """(tessellation, contour) line widths in pixels for an image of `size`."""
    return max(1, round(size / 256)), max(1, round(2 * size / 256))


def render_landmark_image(points: np.ndarray, size: int) -> np.ndarray:
    """Draw one landmark set (478, 2|3), normalised to [0, 1], as an RGB uint8 image (size, size, 3)."""
    pts = topo.check_landmarks(points, batched=False)
    return render_landmark_images(pts[None], size)[0]


def render_landmark_images(points: np.ndarray, size: int) -> np.ndarray:
    """Draw a batch of landmark sets (B, 478, 2|3), normalised to [0, 1], as uint8 images (B, S, S, 3)."""
    pts = topo.check_landmarks(points, batched=True)
    size = int(size)
    if size < 8:
        raise ValueError(f"image size must be >= 8 pixels, got {size}")
    batch = pts.shape[0]
    labels = np.zeros(batch * size * size, dtype=np.uint8)
    if batch == 0:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    xy = pts[..., :2] * size - 0.5  # pixel-centre coordinates
    tess_width, contour_width = line_widths(size)
    for label, name in enumerate(topo.DRAW_ORDER, start=1):
        width = tess_width if name == "tessellation" else contour_width
        flat = _edge_pixels(xy, topo.region_edges(name), size, width)
        labels[flat] = label
    rgba = _PALETTE_WORDS.take(labels).view(np.uint8).reshape(batch, size, size, 4)
    return np.ascontiguousarray(rgba[..., :3])


def _edge_pixels(xy: np.ndarray, edges: np.ndarray, size: int, width: int) -> np.ndarray:
    """Flat indices into a (B, S, S) image of every pixel covered by the edges, brush `width`."""
    # Separate x / y vectors: numpy reductions over a length-2 last axis are slow.
    x0, y0 = xy[:, edges[:, 0], 0].ravel(), xy[:, edges[:, 0], 1].ravel()  # (B*E,)
    dx, dy = xy[:, edges[:, 1], 0].ravel() - x0, xy[:, edges[:, 1], 1].ravel() - y0
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.int64)
    np.minimum(steps, 4 * size, out=steps)  # a wild point must not explode memory
    count = steps + 1
    seg = np.repeat(np.arange(x0.shape[0]), count)
    first = np.cumsum(count) - count
    t = (np.arange(seg.shape[0]) - first[seg]) / np.maximum(steps, 1)[seg]
    px = np.rint(x0[seg] + t * dx[seg]).astype(np.int64)
    py = np.rint(y0[seg] + t * dy[seg]).astype(np.int64)
    img = seg // edges.shape[0]
    if width > 1:
        lo = -(width // 2)
        oy, ox = np.meshgrid(np.arange(lo, lo + width), np.arange(lo, lo + width), indexing="ij")
        px = (px[:, None] + ox.ravel()).ravel()
        py = (py[:, None] + oy.ravel()).ravel()
        img = np.repeat(img, width * width)
    # one unsigned comparison per axis also rejects negatives
    keep = (px.view(np.uint64) < size) & (py.view(np.uint64) < size)
    return (img[keep] * size + py[keep]) * size + px[keep]


def posed_landmarks(base: np.ndarray, yaw, pitch, roll, margin: float = FRAME_MARGIN) -> np.ndarray:
    """Pose 3D landmark sets (B, 478, 3) by (yaw, pitch, roll) degrees and frame them for rendering.

    Each set is put in the canonical framing (centroid to the image centre, fixed RMS size; see
    `template.canonical_frame`), rotated about its centroid with `pose.rotate_landmarks`, and projected
    orthographically (x, y kept; z kept for reference). The size is the same for every pose, so the pose
    is what changes the picture; only if a posed face would come closer than `margin` to the border is
    it shrunk about the image centre just enough to fit. Angles are scalars or (B,) arrays.
    Zero angles reframe without rotating (use that for real landmark sets too, so training and
    generation see the same framing).
    """
    pts = np.asarray(base, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (478, 3):
        raise ValueError(f"base landmarks must have shape (B, 478, 3), got {pts.shape}")
    framed = canonical_frame(pts)
    posed = rotate_landmarks(framed, *(np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll)),
                             center=CANONICAL_CENTER)
    offset = posed - CANONICAL_CENTER
    reach = np.abs(offset[..., :2]).max(axis=(1, 2))
    shrink = np.minimum(1.0, (0.5 - margin) / np.maximum(reach, 1e-12))
    return (offset * shrink[:, None, None] + CANONICAL_CENTER).astype(np.float32)
