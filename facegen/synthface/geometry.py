"""synthface geometry: the 478-point mesh deformed by identity and expression, plus head shell and glasses.

All deformations act on the project's neutral template (`facegen.conditions.template`) in its frontal,
canonically framed coordinates (x right, y down, z away from the camera; image units). Each parameter
moves a region of the mesh, weighted by smooth radial falloffs around anchor landmarks, so every
parameter is a continuous, visible change. The mesh triangles are the 3-cliques of MediaPipe's
tessellation; the eye and mouth openings (holes in that mesh) are closed with fans: the eyes around
the iris centres, the mouth around a point set back into a dark cavity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib.path import Path as MplPath

from facegen.conditions import topology as topo
from facegen.conditions.template import CANONICAL_CENTER, canonical_frame, neutral_template
from facegen.synthface.params import EXPRESSION_PARAMS, IDENTITY_PARAMS

RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
NUM_MESH = 478

# materials (per triangle)
SKIN, LIPS, BROW, SCLERA, MOUTH, HAIR, GLASSES = range(7)


def _chain(edges: np.ndarray) -> np.ndarray:
    """Order the vertices of one closed loop of edges."""
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(int(a), []).append(int(b))
        adj.setdefault(int(b), []).append(int(a))
    start = min(adj)
    loop, prev, cur = [start], -1, start
    while True:
        nxt = [n for n in adj[cur] if n != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        loop.append(cur)
    return np.array(loop)


def _loops(edges: np.ndarray) -> list[np.ndarray]:
    """Split an edge set into its closed loops."""
    remaining = {tuple(e) for e in edges.tolist()}
    loops = []
    while remaining:
        seed = next(iter(remaining))
        comp = {seed[0], seed[1]}
        grew = True
        while grew:
            grew = False
            for e in list(remaining):
                if e[0] in comp or e[1] in comp:
                    comp |= set(e)
                    remaining.discard(e)
                    grew = True
        sub = np.array([e for e in edges.tolist() if e[0] in comp])
        loops.append(_chain(sub))
    return loops


def _poly_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class MeshTopology:
    """Triangles over the 478 landmarks + one extra vertex (the mouth cavity), with materials."""

    triangles: np.ndarray  # (T, 3) int
    materials: np.ndarray  # (T,) int
    inner_lip: np.ndarray  # ordered loop
    right_eye: np.ndarray  # ordered loop
    left_eye: np.ndarray
    lip_vertices: np.ndarray  # bool (478,)
    brow_vertices: np.ndarray  # bool (478,)
    lower_face: np.ndarray  # float (478,) beard weight


@lru_cache(maxsize=1)
def mesh_topology() -> MeshTopology:
    template = neutral_template().astype(np.float64)
    tess = topo.region_edges("tessellation")
    adj = [set() for _ in range(NUM_MESH)]
    for a, b in tess:
        adj[a].add(b)
        adj[b].add(a)
    tris = sorted({tuple(sorted((int(a), int(b), int(c)))) for a, b in tess for c in adj[a] & adj[b]})
    tris_arr = np.array(tris, dtype=np.int64)

    lips = _loops(topo.region_edges("lips"))
    lips.sort(key=lambda loop: _poly_area(template[loop, :2]))
    inner_lip, outer_lip = lips[0], lips[-1]
    right_eye = _chain(topo.region_edges("right_eye"))
    left_eye = _chain(topo.region_edges("left_eye"))

    xy = template[:, :2]
    outer = MplPath(template[outer_lip, :2])
    lip_vertices = outer.contains_points(xy, radius=1e-4) | np.isin(np.arange(NUM_MESH), outer_lip)
    brow_set = np.unique(np.concatenate([topo.region_edges("left_eyebrow"), topo.region_edges("right_eyebrow")]))
    brow_vertices = np.isin(np.arange(NUM_MESH), brow_set)

    materials = np.full(len(tris_arr), SKIN)
    materials[lip_vertices[tris_arr].all(1)] = LIPS
    materials[brow_vertices[tris_arr].all(1)] = BROW

    cavity = NUM_MESH  # extra vertex index
    mouth = [(inner_lip[i], inner_lip[(i + 1) % len(inner_lip)], cavity) for i in range(len(inner_lip))]
    eyes = [(loop[i], loop[(i + 1) % len(loop)], c)
            for loop, c in ((right_eye, RIGHT_IRIS_CENTER), (left_eye, LEFT_IRIS_CENTER)) for i in range(len(loop))]
    tris_all = np.concatenate([tris_arr, np.array(mouth), np.array(eyes)])
    mats_all = np.concatenate([materials, np.full(len(mouth), MOUTH), np.full(len(eyes), SCLERA)])

    mouth_y = template[[topo.MOUTH_LEFT, topo.MOUTH_RIGHT], 1].mean()
    chin_y = template[topo.CHIN, 1]
    lower = np.clip((template[:, 1] - (mouth_y - 0.04)) / (chin_y - mouth_y), 0, 1)
    lower *= np.exp(-(((template[:, 0] - 0.5) / 0.22) ** 4))
    lower[lip_vertices] = 0.0
    return MeshTopology(tris_all, mats_all, inner_lip, right_eye, left_eye, lip_vertices, brow_vertices, lower)


def _rbf(points: np.ndarray, centers: np.ndarray, sigma: float) -> np.ndarray:
    """Max over centres of exp(-d^2 / 2 sigma^2), in the xy plane."""
    d2 = ((points[:, None, :2] - centers[None, :, :2]) ** 2).sum(-1)
    return np.exp(-d2.min(1) / (2 * sigma**2))


@dataclass(frozen=True)
class DeformationBasis:
    """Per-parameter displacement fields (478, 3) at parameter value 1 (linear model)."""

    identity: np.ndarray  # (len(SHAPE_PARAMS), 478, 3)
    expression: np.ndarray  # (EXPRESSION_DIM, 478, 3)
    expression_negative: np.ndarray  # displacement for negative values where it differs (else same)


@lru_cache(maxsize=1)
def deformation_basis() -> DeformationBasis:
    t = neutral_template().astype(np.float64)
    mt = mesh_topology()
    x, y, z = t[:, 0], t[:, 1], t[:, 2]
    cx = 0.5
    mouth_l, mouth_r = t[topo.MOUTH_LEFT], t[topo.MOUTH_RIGHT]
    mouth_c = 0.5 * (mouth_l + mouth_r)
    chin = t[topo.CHIN]
    nose_tip = t[topo.NOSE_TIP]
    eye_r = t[mt.right_eye].mean(0)
    eye_l = t[mt.left_eye].mean(0)
    eye_y = 0.5 * (eye_r[1] + eye_l[1])
    brow_idx = np.nonzero(mt.brow_vertices)[0]
    idx = np.arange(NUM_MESH)

    def field(dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
        return np.stack(np.broadcast_arrays(np.asarray(dx, float) * np.ones(NUM_MESH),
                                            np.asarray(dy, float) * np.ones(NUM_MESH),
                                            np.asarray(dz, float) * np.ones(NUM_MESH)), -1)

    lower = np.clip((y - mouth_c[1] + 0.02) / (chin[1] - mouth_c[1] + 0.02), 0, 1)
    w_nose = _rbf(t, nose_tip[None], 0.055)
    w_eye_r = _rbf(t, t[np.append(mt.right_eye, RIGHT_IRIS_CENTER)], 0.02)
    w_eye_l = _rbf(t, t[np.append(mt.left_eye, LEFT_IRIS_CENTER)], 0.02)
    w_eyes = np.maximum(w_eye_r, w_eye_l)
    w_mouth = _rbf(t, t[mt.lip_vertices], 0.015)
    w_brow = _rbf(t, t[brow_idx], 0.02)
    w_cheek = _rbf(t, np.array([[0.34, 0.58, 0], [0.66, 0.58, 0]]), 0.06)
    side = np.sign(x - cx)
    iris = np.isin(idx, np.arange(468, 478))
    w_eyes = np.where(iris, 1.0, w_eyes)

    identity = [
        field(dx=0.10 * (x - cx)),  # face_width
        field(dy=0.10 * (y - 0.5)),  # face_length
        field(dx=0.22 * (x - cx) * lower),  # jaw_width
        field(dy=0.035 * lower**1.5),  # chin_length
        field(dy=0.022 * w_nose),  # nose_length
        field(dx=0.35 * (x - nose_tip[0]) * w_nose),  # nose_width
        field(dz=-0.035 * w_nose),  # nose_depth
        field(dx=0.02 * side * w_eyes),  # eye_spacing
        field(dx=0.25 * (x - np.where(x < cx, eye_r[0], eye_l[0])) * w_eyes,
              dy=0.35 * (y - eye_y) * w_eyes),  # eye_size
        field(dx=0.25 * (x - mouth_c[0]) * w_mouth),  # mouth_width
        field(dy=0.45 * (y - mouth_c[1]) * w_mouth),  # lip_thickness
        field(dy=-0.018 * w_brow),  # brow_height
        field(dx=0.02 * side * w_cheek, dz=-0.02 * w_cheek),  # cheek_fullness
    ]

    inner_y = t[mt.inner_lip, 1].mean()
    below = (y > inner_y).astype(float)
    jaw = np.clip((y - inner_y) / (chin[1] - inner_y), 0, 1) * np.exp(-(((x - cx) / 0.2) ** 2))
    w_corner_r = _rbf(t, mouth_r[None], 0.03)
    w_corner_l = _rbf(t, mouth_l[None], 0.03)
    w_corners = np.maximum(w_corner_r, w_corner_l)
    upper_lip = (mt.lip_vertices & (y < inner_y)).astype(float) * np.exp(-(((x - cx) / 0.05) ** 2))
    brow_inner = _rbf(t, t[brow_idx][np.abs(t[brow_idx, 0] - cx) < 0.09], 0.025)
    upper_lid = np.zeros(NUM_MESH)
    lower_lid = np.zeros(NUM_MESH)
    for loop, c in ((mt.right_eye, RIGHT_IRIS_CENTER), (mt.left_eye, LEFT_IRIS_CENTER)):
        span = np.ptp(t[loop, 0]) / 2
        bulge = np.clip(1 - ((t[loop, 0] - t[c, 0]) / span) ** 2, 0, 1)
        up = t[loop, 1] < t[c, 1]
        upper_lid[loop[up]] = bulge[up]
        lower_lid[loop[~up]] = bulge[~up]

    mouth_open_pos = field(dy=0.05 * np.maximum(below * w_mouth, 0.9 * jaw) - 0.006 * (1 - below) * w_mouth)
    mouth_open_neg = field(dy=-0.4 * (y - inner_y) * w_mouth * 0.15)
    expression = [
        mouth_open_pos * 1.5,  # mouth_open
        field(dx=0.025 * side * w_corners, dy=-0.045 * w_corners, dz=-0.015 * w_cheek),  # smile
        field(dx=0.045 * side * w_corners),  # mouth_stretch
        field(dx=0.02 * w_corner_l, dy=-0.05 * w_corner_l),  # smirk (subject's left corner)
        field(dy=-0.03 * upper_lip - 0.01 * w_nose),  # upper_lip_raise
        field(dy=-0.05 * w_brow),  # brow_raise
        field(dy=-0.045 * brow_inner),  # brow_inner_up
        field(dx=-0.02 * side * brow_inner, dy=0.03 * brow_inner),  # brow_furrow
        field(dy=-0.016 * upper_lid + 0.006 * lower_lid),  # eye_open
    ]
    negative = list(expression)
    negative[0] = mouth_open_neg
    assert len(identity) == len(IDENTITY_PARAMS) - 10
    assert len(expression) == len(EXPRESSION_PARAMS)
    return DeformationBasis(np.stack(identity), np.stack(expression), np.stack(negative))


def deformed_mesh(identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Frontal, canonically framed (478, 3) mesh of an identity with an expression."""
    basis = deformation_basis()
    n_shape = basis.identity.shape[0]
    pts = neutral_template().astype(np.float64).copy()
    pts += np.tensordot(np.asarray(identity[:n_shape], float), basis.identity, axes=1)
    expr = np.asarray(expression, float)
    pos = np.maximum(expr, 0.0)
    neg = np.minimum(expr, 0.0)
    pts += np.tensordot(pos, basis.expression, axes=1) + np.tensordot(neg, basis.expression_negative, axes=1)
    # keep the eyelids from crossing: the lower lid stays below the upper lid
    return canonical_frame(pts)


@lru_cache(maxsize=1)
def _shell_grid(n_theta: int = 14, n_phi: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere vertices and triangles (latitude-longitude grid, poles included)."""
    theta = np.linspace(0, np.pi, n_theta)  # from top (y = -1) to bottom
    phi = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([np.sin(th) * np.sin(ph), -np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    tris = []
    for i in range(n_theta - 1):
        for j in range(n_phi):
            a, b = i * n_phi + j, i * n_phi + (j + 1) % n_phi
            c, d = a + n_phi, b + n_phi
            tris += [(a, b, c), (b, d, c)]
    return verts, np.array(tris)


def head_shell(mesh: np.ndarray, identity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ellipsoid head behind the face (vertices, triangles, materials HAIR/SKIN) in mesh coordinates.

    The ellipsoid is pushed back until its front surface lies behind every face point, so the face
    mesh always wins the depth test; above the hairline and on the back it is hair.
    """
    params = dict(zip(IDENTITY_PARAMS, identity))
    verts, tris = _shell_grid()
    volume = 1.0 + 0.12 * params["hair_volume"]
    face_w = np.ptp(mesh[:468, 0])
    face_h = np.ptp(mesh[:468, 1])
    radii = np.array([0.55 * face_w * volume, 0.56 * face_h * volume, 0.52 * face_w])
    top = mesh[:468, 1].min()
    center = np.array([mesh[:468, 0].mean(), top + radii[1] * 0.80, 0.0])
    # push back: front surface z_f(x, y) = cz - rz * sqrt(1 - u^2 - v^2) must exceed face z + margin
    u = (mesh[:468, 0] - center[0]) / radii[0]
    v = (mesh[:468, 1] - center[1]) / radii[1]
    inside = u**2 + v**2 < 1
    depth = radii[2] * np.sqrt(np.clip(1 - u**2 - v**2, 0, 1))
    need = (mesh[:468, 2] + 0.01 + depth)[inside]
    center[2] = need.max() if need.size else mesh[:, 2].max()
    shell = verts * radii + center
    # hair: above the hairline everywhere; behind the ears down to hair_length
    hairline_y = top + 0.03 + 0.05 * (1 - params["hairline"])
    back = verts[:, 2] > -0.35
    length_y = center[1] + radii[1] * (0.1 + 0.8 * params["hair_length"])
    centroid = shell[tris].mean(1)
    is_hair = (centroid[:, 1] < hairline_y) | (back[tris].all(1) & (centroid[:, 1] < length_y))
    materials = np.where(is_hair, HAIR, SKIN)
    return shell, tris, materials


def glasses_geometry(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two rims and a bridge as thin triangle strips just in front of the eyes."""
    mt = mesh_topology()
    verts, tris = [], []
    n = 16
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rims = []
    for loop, c in ((mt.right_eye, RIGHT_IRIS_CENTER), (mt.left_eye, LEFT_IRIS_CENTER)):
        center = mesh[loop].mean(0)
        rx = np.ptp(mesh[loop, 0]) * 0.85
        ry = rx * 0.72
        z = mesh[loop, 2].min() - 0.035
        for r_scale in (1.0, 1.18):
            ring = np.stack([center[0] + r_scale * rx * np.cos(ang), center[1] + r_scale * ry * np.sin(ang) + 0.004,
                             np.full(n, z)], -1)
            verts.append(ring)
        rims.append(center)
    base = 0
    for _ in range(2):
        for i in range(n):
            a, b = base + i, base + (i + 1) % n
            tris += [(a, b, a + n), (b, b + n, a + n)]
        base += 2 * n
    # bridge between the inner sides of the rims
    inner_r = verts[0][np.argmax(verts[0][:, 0])]
    inner_l = verts[2][np.argmin(verts[2][:, 0])]
    h = 0.006
    bridge = np.array([inner_r + [0, -h, 0], inner_r + [0, h, 0], inner_l + [0, -h, 0], inner_l + [0, h, 0]])
    verts.append(bridge)
    tris += [(base, base + 1, base + 2), (base + 1, base + 3, base + 2)]
    return np.concatenate(verts), np.array(tris)


def face_center() -> np.ndarray:
    return CANONICAL_CENTER.copy()
