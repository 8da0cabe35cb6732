"""MediaPipe face-mesh topology (478 points with irises): edge lists per region, mirror map, palette.

The edge lists are MediaPipe's own connection sets (``mp.solutions.face_mesh.FACEMESH_*``), dumped once
by ``scripts/build_face_assets.py`` into ``data/face_mesh_topology.npz`` so runtime code needs no
MediaPipe. Edges are undirected, stored as sorted ``(i, j)`` pairs with ``i < j``, rows sorted.

Regions follow MediaPipe's naming: ``left_*`` is the subject's left, i.e. image right in an unmirrored
photo. ``mirror[i]`` is the landmark on the other side of the face matching ``i`` (midline points map
to themselves); see ``data/README.md`` for how it was derived.

Palette (RGB on a black background; see :data:`REGION_COLORS`), drawn in :data:`DRAW_ORDER`:

=============  ===============  ======================================
region         colour           why
=============  ===============  ======================================
tessellation   (72, 72, 72)     dim grey: shape cue, never dominates
face_oval      (224, 224, 224)  light grey outline
nose           (255, 200, 0)    amber
lips           (255, 64, 64)    red
left_eyebrow   (0, 160, 255)    azure (subject's left = image right)
right_eyebrow  (255, 128, 0)    orange (subject's right = image left)
left_eye       (0, 255, 96)     green
right_eye      (255, 0, 200)    magenta
left_iris      (0, 255, 255)    cyan
right_iris     (255, 255, 0)    yellow
=============  ===============  ======================================

Left and right get different colours on purpose: a yawed face and its mirror image must render
differently, otherwise the landmark control could not tell +yaw from -yaw.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from facegen.labels import NUM_LANDMARKS

TOPOLOGY_FILE = "face_mesh_topology.npz"

#: Region names, in the order they are drawn (later regions are drawn over earlier ones).
DRAW_ORDER: tuple[str, ...] = (
    "tessellation",
    "face_oval",
    "nose",
    "lips",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "left_iris",
    "right_iris",
)
#: The contour regions (everything but the tessellation).
CONTOUR_REGIONS: tuple[str, ...] = DRAW_ORDER[1:]

#: Fixed RGB colour per region (uint8). Background is black (0, 0, 0).
REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "tessellation": (72, 72, 72),
    "face_oval": (224, 224, 224),
    "nose": (255, 200, 0),
    "lips": (255, 64, 64),
    "left_eyebrow": (0, 160, 255),
    "right_eyebrow": (255, 128, 0),
    "left_eye": (0, 255, 96),
    "right_eye": (255, 0, 200),
    "left_iris": (0, 255, 255),
    "right_iris": (255, 255, 0),
}

#: Well-known single landmarks (MediaPipe face-mesh indices).
NOSE_TIP = 1
FOREHEAD_TOP = 10
CHIN = 152
RIGHT_EYE_OUTER = 33  # subject's right = image left
LEFT_EYE_OUTER = 263
MOUTH_RIGHT = 61
MOUTH_LEFT = 291


@lru_cache(maxsize=1)
def _load() -> dict[str, np.ndarray]:
    ref = resources.files("facegen.conditions").joinpath("data", TOPOLOGY_FILE)
    with resources.as_file(ref) as path, np.load(path) as npz:
        arrays = {name: np.asarray(npz[name]) for name in npz.files}
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays


def region_edges(region: str) -> np.ndarray:
    """Undirected edges (E, 2) int32 of one region (read-only); see :data:`DRAW_ORDER` for names."""
    if region not in REGION_COLORS:
        raise KeyError(f"unknown face-mesh region {region!r}; expected one of {DRAW_ORDER}")
    return _load()[f"edges_{region}"]


def all_region_edges() -> dict[str, np.ndarray]:
    """All regions' edge arrays, in draw order."""
    return {name: region_edges(name) for name in DRAW_ORDER}


def mirror_indices() -> np.ndarray:
    """(478,) int32: index of each landmark's left/right counterpart (an involution)."""
    return _load()["mirror"]


@lru_cache(maxsize=1)
def face_oval_polygon() -> np.ndarray:
    """Face-oval landmark indices (36,) ordered around the outline (a closed polygon, not repeated)."""
    return _chain_cycle(region_edges("face_oval"))


def _chain_cycle(edges: np.ndarray) -> np.ndarray:
    """Order the vertices of a simple cycle given as an unordered edge list."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    if any(len(v) != 2 for v in neighbours.values()):
        raise ValueError("face-oval edges do not form a simple cycle")
    start = min(neighbours)
    order, prev, cur = [start], -1, start
    while True:
        a, b = neighbours[cur]
        nxt = b if a == prev else a
        if nxt == start:
            break
        order.append(nxt)
        prev, cur = cur, nxt
    if len(order) != len(neighbours):
        raise ValueError("face-oval edges form more than one cycle")
    out = np.asarray(order, dtype=np.int32)
    out.setflags(write=False)
    return out


def check_landmarks(points: np.ndarray, *, batched: bool) -> np.ndarray:
    """Validate a landmark array's shape ((478, 2|3) or (B, 478, 2|3)) and return it as float64."""
    pts = np.asarray(points, dtype=np.float64)
    want_ndim = 3 if batched else 2
    if pts.ndim != want_ndim or pts.shape[-2] != NUM_LANDMARKS or pts.shape[-1] not in (2, 3):
        shape = "(B, 478, 2|3)" if batched else "(478, 2|3)"
        raise ValueError(f"landmarks must have shape {shape}, got {pts.shape}")
    return pts
