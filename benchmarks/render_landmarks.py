"""Landmark-image rendering: facegen's vectorised numpy rasteriser vs PIL ImageDraw (vs OpenCV if present).

    .venv/bin/python benchmarks/render_landmarks.py [--size 256] [--batch 32] [--repeats 5]

Same posed landmark sets, same edges and line widths for every backend; prints ms per image (best of
`repeats`) and ratios against the numpy renderer measured in the same run. Also times posing + masks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageDraw

from facegen.conditions import topology as topo
from facegen.conditions.masks import face_mask
from facegen.conditions.render import line_widths, posed_landmarks, render_landmark_image, render_landmark_images
from facegen.conditions.template import neutral_template


def pil_render(points: np.ndarray, size: int) -> np.ndarray:
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    xy = points[:, :2] * size - 0.5
    tess_w, contour_w = line_widths(size)
    for name in topo.DRAW_ORDER:
        colour = topo.REGION_COLORS[name]
        width = tess_w if name == "tessellation" else contour_w
        for a, b in topo.region_edges(name):
            draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=width)
    return np.asarray(img)


def cv2_render(points: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.zeros((size, size, 3), np.uint8)
    xy = np.rint(points[:, :2] * size - 0.5).astype(np.int32)
    tess_w, contour_w = line_widths(size)
    for name in topo.DRAW_ORDER:
        width = tess_w if name == "tessellation" else contour_w
        lines = xy[topo.region_edges(name)]  # (E, 2, 2): each edge as a 2-point polyline
        cv2.polylines(img, list(lines), False, topo.REGION_COLORS[name], width, lineType=cv2.LINE_8)
    return img


def best_ms_per_image(fn, n_images: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / n_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, size = args.batch, args.size
    base = np.repeat(neutral_template()[None], n, axis=0)
    angles = rng.uniform(-40, 40, n), rng.uniform(-20, 20, n), rng.uniform(-20, 20, n)
    posed = posed_landmarks(base, *angles)

    results = {
        "numpy, one image per call": best_ms_per_image(
            lambda: [render_landmark_image(p, size) for p in posed], n, args.repeats
        ),
        f"numpy, batch of {n}": best_ms_per_image(lambda: render_landmark_images(posed, size), n, args.repeats),
        "PIL ImageDraw, one per call": best_ms_per_image(lambda: [pil_render(p, size) for p in posed], n, args.repeats),
    }
    try:
        import cv2  # noqa: F401  (optional: comes with the analysis extra, not a runtime dependency)

        results["OpenCV polylines, one per call"] = best_ms_per_image(
            lambda: [cv2_render(p, size) for p in posed], n, args.repeats
        )
    except ImportError:
        pass
    reference = results[f"numpy, batch of {n}"]
    print(f"render {size}x{size}, {n} posed faces, best of {args.repeats}:")
    for name, ms in results.items():
        print(f"  {name:34s} {ms:7.3f} ms/image   x{ms / reference:5.2f} vs numpy batch")
    pose_ms = best_ms_per_image(lambda: posed_landmarks(base, *angles), n, args.repeats)
    mask_ms = best_ms_per_image(lambda: [face_mask(p, size) for p in posed], n, args.repeats)
    print(f"  posed_landmarks                    {pose_ms:7.3f} ms/face")
    print(f"  face_mask {size}x{size}                 {mask_ms:7.3f} ms/mask")
    same = np.mean([(pil_render(p, size) != render_landmark_image(p, size)).any(-1).mean() for p in posed[:4]])
    print(f"  pixels that differ numpy vs PIL: {100 * same:.2f}% (different line rasterisation rules)")


if __name__ == "__main__":
    main()
