"""Face geometry on images: 5-point similarity alignment (ArcFace 112x112) and square face crops.

Coordinates are pixel coordinates with integer pixel centres (OpenCV's convention, in which the
ArcFace reference points are given); warping goes through Pillow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from facegen.analysis.base import FaceLandmarks

#: The 5 reference points (eye centres, nose tip, mouth corners; image-left first) of the standard
#: 112x112 ArcFace alignment used to train insightface's recognition models.
ARCFACE_REFERENCE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: MediaPipe face-mesh indices for those 5 points: iris centres, nose tip, mouth corners.
#: The mesh is anatomical but its "right eye" is always the image-left one for a face seen
#: frontally (also in mirrored photos), which is the order the reference expects.
MESH_FIVE_POINTS = (468, 473, 1, 61, 291)


def five_points(face: FaceLandmarks) -> np.ndarray:
    """(5, 2) pixel coordinates of the ArcFace alignment points."""
    return face.pixels()[list(MESH_FIVE_POINTS), :2]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation (2x3) mapping `src` points onto `dst`.

    Closed form (Umeyama 1991): centre both sets, SVD of their covariance, no reflection.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var_s
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp RGB `image` by the 2x3 `matrix` (source pixel -> output pixel) into a (size, size, 3) image.

    Outside the source is black. Bilinear, deterministic.
    """
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)
    # Pillow samples at pixel centres (x + 0.5); shift so integer-centred coordinates line up.
    shift_in = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    shift_out = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    coeffs = (shift_out @ inv @ shift_in)[:2].ravel()
    out = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.AFFINE, data=tuple(coeffs), resample=Image.Resampling.BILINEAR, fillcolor=0
    )
    return np.asarray(out, dtype=np.uint8)


def arcface_crop(image: np.ndarray, face: FaceLandmarks, size: int = 112) -> np.ndarray:
    """The face aligned to ArcFace's 5 reference points, (size, size, 3) uint8."""
    ref = ARCFACE_REFERENCE_112 * (size / 112.0)
    return warp_affine(image, similarity_transform(five_points(face), ref), size)


def square_box(face: FaceLandmarks, margin: float) -> tuple[float, float, float]:
    """(left, top, side) in pixels: a square centred on the landmarks' box, side = margin * its longer edge."""
    px = face.pixels()[:, :2]
    lo, hi = px.min(0), px.max(0)
    centre = (lo + hi) / 2.0
    side = float(margin * max(hi - lo))
    return float(centre[0] - side / 2.0), float(centre[1] - side / 2.0), max(side, 1.0)


def _crop(image: np.ndarray, face: FaceLandmarks, size: int, left: float, top: float, side: float) -> tuple[np.ndarray, FaceLandmarks]:
    scale = size / side
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    crop = warp_affine(image, matrix, size)
    px = face.pixels()
    points = np.stack([(px[:, 0] - left) / side, (px[:, 1] - top) / side, px[:, 2] / side], axis=1)
    return crop, FaceLandmarks(points.astype(np.float32), size, size)


def face_crop(image: np.ndarray, face: FaceLandmarks, size: int) -> tuple[np.ndarray, FaceLandmarks]:
    """An upright square crop in the canonical framing of `facegen.conditions.template`, and the
    landmarks normalised to it (z centred, in the crop's x unit).

    The crop is placed so the landmarks' centroid lands on the crop centre and their 3D RMS radius is
    `CANONICAL_RMS_RADIUS` of the crop side: exactly the framing `posed_landmarks` renders landmark
    images in, so training crops, their landmarks and generation-time landmark images line up. Roll is
    kept (it is a label). Outside the source image is black.
    """
    from facegen.conditions.template import CANONICAL_CENTER, CANONICAL_RMS_RADIUS

    px = face.pixels()
    centroid = px.mean(0)
    rms = float(np.sqrt(((px - centroid) ** 2).sum(1).mean()))
    side = max(rms / CANONICAL_RMS_RADIUS, 1.0)
    left = centroid[0] - CANONICAL_CENTER[0] * side
    top = centroid[1] - CANONICAL_CENTER[1] * side
    crop, crop_face = _crop(image, face, size, left, top, side)
    points = crop_face.points.copy()
    points[:, 2] -= points[:, 2].mean()
    return crop, FaceLandmarks(points, size, size)


def box_crop(image: np.ndarray, face: FaceLandmarks, size: int, margin: float) -> tuple[np.ndarray, FaceLandmarks]:
    """An upright square crop around the landmarks' box (side = margin x its longer edge), resized to `size`."""
    left, top, side = square_box(face, margin)
    return _crop(image, face, size, left, top, side)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A square RGB crop resized to (size, size, 3) (bilinear; no-op at the right size)."""
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
