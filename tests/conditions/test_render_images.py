"""Landmark control images: deterministic bytes, shape/dtype, colours per region, batching."""

import hashlib

import numpy as np
import pytest

from facegen.conditions import topology as topo
from facegen.conditions.render import line_widths, posed_landmarks, render_landmark_image, render_landmark_images
from facegen.conditions.template import neutral_template

# sha256 of render_landmark_image(neutral_template(), 128). Change it only on purpose (renderer,
# palette or template changed): models trained on the old images would see different conditions.
GOLDEN_TEMPLATE_128 = "7f6f7a1fa168502dcd9fdd4813afd93578c3a1dd8f46dd249fe64411d50ff0b1"


@pytest.fixture(scope="module")
def posed():
    base = np.repeat(neutral_template()[None], 4, axis=0)
    return posed_landmarks(base, [0, 30, -30, 10], [0, 0, 10, -20], [0, 0, -15, 25])


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_output_shape_and_dtype(posed, size):
    single = render_landmark_image(posed[0], size)
    assert single.shape == (size, size, 3) and single.dtype == np.uint8
    batch = render_landmark_images(posed, size)
    assert batch.shape == (4, size, size, 3) and batch.dtype == np.uint8


def test_identical_bytes_across_calls_and_golden_hash(posed):
    a = render_landmark_images(posed, 256)
    b = render_landmark_images(posed.copy(), 256)
    assert a.tobytes() == b.tobytes()
    digest = hashlib.sha256(render_landmark_image(neutral_template(), 128).tobytes()).hexdigest()
    assert digest == GOLDEN_TEMPLATE_128


def test_batched_equals_single_and_ignores_batch_mates(posed):
    batch = render_landmark_images(posed, 128)
    for i in range(len(posed)):
        np.testing.assert_array_equal(batch[i], render_landmark_image(posed[i], 128))
    np.testing.assert_array_equal(render_landmark_images(posed[[2, 0]], 128)[1], batch[0])


def test_every_region_colour_is_drawn_and_nothing_else(posed):
    img = render_landmark_image(posed[0], 256)
    colours = {tuple(c) for c in np.unique(img.reshape(-1, 3), axis=0).tolist()}
    assert colours == {(0, 0, 0), *topo.REGION_COLORS.values()}


def test_contours_drawn_over_the_tessellation():
    t = neutral_template()
    img = render_landmark_image(t, 256)
    # mouth and eye corners lie on tessellation edges (drawn first) and on their contour (drawn later)
    for index, region in [(topo.MOUTH_LEFT, "lips"), (topo.RIGHT_EYE_OUTER, "right_eye")]:
        x, y = np.rint(t[index, :2] * 256 - 0.5).astype(int)
        assert tuple(img[y, x]) == topo.REGION_COLORS[region]


def test_2d_and_3d_inputs_agree_and_the_face_sits_where_the_points_are():
    t = neutral_template()
    img3 = render_landmark_image(t, 128)
    np.testing.assert_array_equal(render_landmark_image(t[:, :2], 128), img3)
    ys, xs = np.nonzero(img3.any(-1))
    lo, hi = np.floor(t[:, :2].min(0) * 128) - 2, np.ceil(t[:, :2].max(0) * 128) + 2
    assert xs.min() >= lo[0] and xs.max() <= hi[0] and ys.min() >= lo[1] and ys.max() <= hi[1]


def test_points_outside_the_image_are_clipped_not_wrapped():
    t = neutral_template().astype(np.float64) + np.array([0.6, 0.0, 0.0])  # right part off-image
    img = render_landmark_image(t, 128)
    assert img[:, :64].sum() == 0 or img[:, :40].sum() == 0  # nothing wrapped to the left edge
    assert img.any()


def test_line_widths_scale_with_size():
    assert line_widths(128) == (1, 1) and line_widths(256) == (1, 2) and line_widths(512) == (2, 4)


@pytest.mark.parametrize("shape", [(477, 3), (478, 4), (2, 478, 3)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match="landmarks must have shape"):
        render_landmark_image(np.zeros(shape), 64)
