"""Face masks from the face-oval polygon."""

import numpy as np
import pytest
from matplotlib.path import Path

from facegen.conditions.masks import face_mask, face_masks
from facegen.conditions.render import posed_landmarks
from facegen.conditions.template import neutral_template
from facegen.conditions.topology import face_oval_polygon


@pytest.fixture(scope="module")
def posed():
    base = np.repeat(neutral_template()[None], 3, axis=0)
    return posed_landmarks(base, [0, 40, -25], [0, 10, -20], [0, 0, 30])


@pytest.mark.parametrize("size", [32, 128, 333])
def test_mask_covers_the_face_centre_and_not_the_corners(posed, size):
    m = face_mask(posed[0], size)
    assert m.shape == (size, size) and m.dtype == np.bool_
    assert m[size // 2, size // 2]
    assert not (m[0, 0] or m[0, -1] or m[-1, 0] or m[-1, -1])


def test_mask_area_scales_with_resolution(posed):
    fractions = [face_mask(posed[0], s).mean() for s in (64, 256, 1024)]
    assert 0.2 < fractions[-1] < 0.6
    np.testing.assert_allclose(fractions, fractions[-1], rtol=0.03)
    assert face_mask(posed[0], 256).sum() > 15 * face_mask(posed[0], 64).sum()


def test_mask_matches_a_reference_point_in_polygon_test(posed):
    size = 200
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centres = np.stack([xx.ravel(), yy.ravel()], 1)
    for pts in posed:
        poly = Path(pts[face_oval_polygon(), :2] * size)
        reference = poly.contains_points(centres).reshape(size, size)
        assert (reference != face_mask(pts, size)).sum() <= 2  # pixel centres exactly on an edge may differ


def test_batched_masks_equal_single(posed):
    batch = face_masks(posed, 96)
    assert batch.shape == (3, 96, 96)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], face_mask(posed[i], 96))
    assert not np.array_equal(batch[0], batch[1])


def test_mask_of_a_face_shifted_off_image_is_partial():
    t = neutral_template().astype(np.float64) + np.array([0.5, 0.0, 0.0])
    m = face_mask(t, 128)
    assert m[:, -1].any() and not m[:, :40].any()
