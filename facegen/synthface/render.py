"""Render a :class:`FaceSpec` as a shaded 3D face: filled, flat-lit triangles behind a z-buffer.

The face mesh (identity + expression deformation of the 478-point template) is canonically framed,
posed with `facegen.conditions.pose` about the canonical centre (exactly how the planner poses landmark
sets), jittered in scale and shift, and drawn orthographically together with a head shell (hair and
skin), optional glasses, sclera with iris and pupil, and a mouth cavity. The returned landmarks are the
drawn 478 points normalised to the image, the same convention `facegen extract` stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegen.conditions.masks import face_mask
from facegen.conditions.pose import rotate_landmarks
from facegen.conditions.template import CANONICAL_CENTER
from facegen.synthface import geometry as geo
from facegen.synthface.params import IDENTITY_PARAMS, FaceSpec
from facegen.synthface.raster import downsample, rasterize, triangle_normals

SKIN_LIGHT = np.array([0.96, 0.80, 0.69])
SKIN_DARK = np.array([0.34, 0.21, 0.14])
HAIR_DARK = np.array([0.07, 0.05, 0.04])
HAIR_LIGHT = np.array([0.86, 0.74, 0.46])
HAIR_RED = np.array([0.62, 0.26, 0.10])
IRIS_COLORS = np.array([[0.25, 0.45, 0.80], [0.30, 0.55, 0.30], [0.36, 0.20, 0.09]])
SCLERA = np.array([0.94, 0.93, 0.91])
MOUTH = np.array([0.22, 0.04, 0.06])
GLASSES = np.array([0.08, 0.08, 0.10])
AMBIENT, DIFFUSE = 0.42, 0.62


@dataclass(frozen=True)
class RenderedFace:
    image: np.ndarray  # uint8 (S, S, 3)
    landmarks: np.ndarray  # float32 (478, 3), x, y in [0, 1] of the image, z in x's unit
    mask: np.ndarray  # bool (S, S): the face oval of the landmarks


def appearance_colors(identity: np.ndarray) -> dict[str, np.ndarray]:
    p = dict(zip(IDENTITY_PARAMS, identity))
    skin = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * p["skin_tone"]
    skin = np.clip(skin + np.array([0.05, 0.0, -0.05]) * (p["skin_warmth"] - 0.5), 0, 1)
    hair = HAIR_DARK + (HAIR_LIGHT - HAIR_DARK) * (1 - p["hair_darkness"])
    hair = hair + (HAIR_RED - hair) * 0.6 * max(0.0, p["hair_warmth"] - 0.4)
    t = p["iris_color"] * 2
    i = min(int(t), 1)
    iris = IRIS_COLORS[i] + (IRIS_COLORS[i + 1] - IRIS_COLORS[i]) * (t - i)
    lips = skin * np.array([0.92, 0.58, 0.58]) + np.array([0.08, 0.0, 0.02])
    return {"skin": skin, "hair": hair, "brow": hair * 0.6, "iris": iris, "lips": np.clip(lips, 0, 1)}


def posed_face(spec: FaceSpec) -> tuple[np.ndarray, np.ndarray]:
    """(frontal mesh (479, 3) incl. the mouth-cavity vertex, posed+jittered transform applied) as
    (frontal, posed) arrays."""
    mesh = geo.deformed_mesh(spec.identity, spec.expression)
    mt = geo.mesh_topology()
    cavity = mesh[mt.inner_lip].mean(0) + np.array([0.0, 0.0, 0.03])
    frontal = np.vstack([mesh, cavity])
    return frontal, _pose(frontal, spec)


def _pose(points: np.ndarray, spec: FaceSpec) -> np.ndarray:
    posed = rotate_landmarks(points, spec.yaw, spec.pitch, spec.roll, center=CANONICAL_CENTER)
    n = spec.nuisance
    posed = (posed - CANONICAL_CENTER) * n.scale + CANONICAL_CENTER
    posed[:, 0] += n.shift[0]
    posed[:, 1] += n.shift[1]
    return posed


def render_face(spec: FaceSpec, size: int = 64, supersample: int = 2) -> RenderedFace:
    """Render one face; deterministic in `spec`."""
    mt = geo.mesh_topology()
    params = dict(zip(IDENTITY_PARAMS, spec.identity))
    colors = appearance_colors(spec.identity)
    frontal, posed = posed_face(spec)

    shell_v, shell_t, shell_m = geo.head_shell(frontal[:478], spec.identity)
    parts_v = [posed, _pose(shell_v, spec)]
    parts_t = [mt.triangles, shell_t + len(frontal)]
    mats = [mt.materials, shell_m]
    if params["glasses"] > 0.5:
        gv, gt = geo.glasses_geometry(frontal[:478])
        parts_v.append(_pose(gv, spec))
        parts_t.append(gt + len(frontal) + len(shell_v))
        mats.append(np.full(len(gt), geo.GLASSES))
    verts = np.vstack(parts_v)
    tris = np.vstack(parts_t)
    materials = np.concatenate(mats)

    # base colour per triangle
    palette = np.stack([colors["skin"], colors["lips"], colors["brow"], SCLERA, MOUTH, colors["hair"], GLASSES])
    tri_color = palette[materials].copy()
    n_face = len(mt.triangles)
    face_tris = mt.triangles[:n_face]
    centroid_y = frontal[face_tris, 1].mean(1)
    top = frontal[:468, 1].min()
    fringe = (materials[:n_face] == geo.SKIN) & (centroid_y < top + 0.012 + 0.05 * (1 - params["hairline"]) ** 2)
    tri_color[:n_face][fringe] = colors["hair"]
    if params["beard"] > 0.5:
        w = np.append(mt.lower_face, 0.0)[face_tris].mean(1)[:, None] * (materials[:n_face] == geo.SKIN)[:, None]
        tri_color[:n_face] = tri_color[:n_face] * (1 - 0.85 * w) + colors["hair"] * 0.85 * w

    az, el = np.deg2rad(spec.nuisance.light_azimuth), np.deg2rad(spec.nuisance.light_elevation)
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)])
    shade = AMBIENT + DIFFUSE * np.clip(triangle_normals(verts, tris) @ light, 0, None)
    flat = np.where((materials == geo.SCLERA)[:, None] | (materials == geo.MOUTH)[:, None], 0.55 + 0.45 * shade[:, None],
                    shade[:, None]) * tri_color

    big = size * supersample
    visible = rasterize(verts[:, :2] * big, verts[:, 2], tris, big)
    bg = np.asarray(spec.nuisance.background)
    ys = np.linspace(1.06, 0.94, big)[:, None, None]
    img = np.broadcast_to(bg * ys, (big, big, 3)).copy()
    hit = visible >= 0
    img[hit] = flat[visible[hit]]

    # irises and pupils on visible sclera pixels
    sclera_pix = hit & (materials[np.maximum(visible, 0)] == geo.SCLERA)
    if sclera_pix.any():
        iy, ix = np.nonzero(sclera_pix)
        first_left = n_face - len(mt.left_eye)  # the left-eye fan comes last among the face triangles
        left = visible[iy, ix] >= first_left
        for side, center, ring in ((False, 468, slice(469, 473)), (True, 473, slice(474, 478))):
            sel = left == side
            c = posed[center, :2] * big
            r = np.linalg.norm(posed[ring, :2] * big - c, axis=1).mean() * 1.05
            d = np.hypot(ix[sel] + 0.5 - c[0], iy[sel] + 0.5 - c[1])
            iris = d < r
            img[iy[sel][iris], ix[sel][iris]] = colors["iris"] * (0.75 + 0.25 * (d[iris] / r))[:, None]
            pupil = d < 0.45 * r
            img[iy[sel][pupil], ix[sel][pupil]] = 0.05
    out = downsample(np.clip(img, 0, 1), supersample)
    image = (out * 255 + 0.5).astype(np.uint8)
    landmarks = posed[:478].astype(np.float32)
    return RenderedFace(image, landmarks, face_mask(landmarks, size))
