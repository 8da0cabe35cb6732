"""Does the real MediaPipe face mesh (an estimator nobody here trained) see synthface renders, and
what pose does it measure? Not a test; the numbers go into benchmarks/results/synthface.md.

Renders N fresh faces of held-out identities (64 px, upscaled to 256 for MediaPipe), runs the
`mediapipe` landmark backend + `facegen.analysis.headpose.head_pose`, and prints the detection rate
and pose RMSE against the renderer's truth, next to the synthface proxy estimator on the same images.

    .venv/bin/python benchmarks/synthface_mediapipe.py [--n 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--upscale", type=int, default=256)
    args = parser.parse_args()

    from facegen.analysis.headpose import head_pose
    from facegen.analysis.registry import get_backend
    from facegen.synthface.dataset import heldout_config, spec_from_row, spec_row
    from facegen.synthface.estimator import load_estimator
    from facegen.synthface.render import render_face

    config = heldout_config("unused", args.n, num_identities=50, seed=11)
    rows = [spec_row(i, config) for i in range(args.n)]
    images = np.stack([render_face(spec_from_row(r)).image for r in rows])
    truth = np.array([[r["yaw"], r["pitch"], r["roll"]] for r in rows])

    mesh = get_backend("mediapipe", kind="landmarks")
    found, poses = [], []
    for image in images:
        big = np.asarray(Image.fromarray(image).resize((args.upscale, args.upscale), Image.BICUBIC))
        face = mesh.detect(big)
        found.append(face is not None)
        if face is not None:
            p = head_pose(face)
            poses.append([p.yaw, p.pitch, p.roll])
    found = np.array(found)
    m = load_estimator().measure(images)
    est = np.stack([m.yaw, m.pitch, m.roll], 1)

    def rmse(a, b) -> str:
        return " / ".join(f"{np.sqrt(np.mean((a[:, k] - b[:, k]) ** 2)):.1f}" for k in range(3))

    print(f"renders: {args.n} (yaw U(-65, 65), pitch U(-33, 33), roll U(-28, 28)), upscaled to {args.upscale} px for MediaPipe")
    print(f"MediaPipe face mesh detects: {found.mean():.1%}")
    if found.any():
        mp = np.array(poses)
        print(f"MediaPipe pose RMSE yaw / pitch / roll (deg, detected faces): {rmse(mp, truth[found])}")
        small = np.abs(truth[found, 0]) < 30
        if small.any():
            print(f"  ... with |yaw| < 30: {rmse(mp[small], truth[found][small])} ({small.sum()} faces)")
        print(f"proxy estimator on the same faces: {rmse(est[found], truth[found])}")
    print(f"proxy estimator pose RMSE, all renders: {rmse(est, truth)}")


if __name__ == "__main__":
    main()
