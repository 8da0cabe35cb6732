"""Face-mesh topology package data: MediaPipe's connection sets, mirror map, palette."""

import numpy as np
import pytest

from facegen.conditions import topology as topo

# Unique undirected edges / distinct landmarks of MediaPipe 0.10.21's connection sets.
EXPECTED = {
    "tessellation": (1322, 468),
    "face_oval": (36, 36),
    "nose": (25, 24),
    "lips": (40, 40),
    "left_eyebrow": (8, 10),
    "right_eyebrow": (8, 10),
    "left_eye": (16, 16),
    "right_eye": (16, 16),
    "left_iris": (4, 4),
    "right_iris": (4, 4),
}


@pytest.mark.parametrize("region", topo.DRAW_ORDER)
def test_region_sizes_and_index_range(region):
    edges = topo.region_edges(region)
    assert edges.dtype == np.int32 and edges.ndim == 2 and edges.shape[1] == 2
    assert (edges.shape[0], len(np.unique(edges))) == EXPECTED[region]
    assert edges.min() >= 0 and edges.max() < 478
    assert (edges[:, 0] < edges[:, 1]).all()  # undirected, stored once
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)


def test_irises_are_the_refined_points_468_to_477():
    irises = np.union1d(topo.region_edges("left_iris"), topo.region_edges("right_iris"))
    np.testing.assert_array_equal(irises, [469, 470, 471, 472, 474, 475, 476, 477])


def test_mirror_map_is_an_involution_that_swaps_sides():
    m = topo.mirror_indices()
    assert m.shape == (478,)
    np.testing.assert_array_equal(m[m], np.arange(478))
    for left, right in [("left_eye", "right_eye"), ("left_eyebrow", "right_eyebrow"), ("left_iris", "right_iris")]:
        assert set(m[topo.region_edges(left)].ravel()) == set(topo.region_edges(right).ravel())
    assert m[topo.NOSE_TIP] == topo.NOSE_TIP and m[topo.CHIN] == topo.CHIN
    assert m[topo.LEFT_EYE_OUTER] == topo.RIGHT_EYE_OUTER and m[topo.MOUTH_LEFT] == topo.MOUTH_RIGHT


def test_face_oval_polygon_is_one_closed_cycle_through_every_oval_point():
    poly = topo.face_oval_polygon()
    edges = {tuple(e) for e in topo.region_edges("face_oval").tolist()}
    assert sorted(poly.tolist()) == sorted(np.unique(topo.region_edges("face_oval")).tolist())
    for a, b in zip(poly, np.roll(poly, -1)):
        assert (min(a, b), max(a, b)) in edges


def test_palette_has_a_distinct_colour_per_region_and_left_right_differ():
    colours = [topo.REGION_COLORS[r] for r in topo.DRAW_ORDER]
    assert len(set(colours)) == len(colours)
    assert (0, 0, 0) not in colours  # background


def test_region_edges_are_read_only_and_unknown_region_fails():
    with pytest.raises(ValueError):
        topo.region_edges("lips")[0, 0] = 1
    with pytest.raises(KeyError, match="unknown face-mesh region"):
        topo.region_edges("ears")
