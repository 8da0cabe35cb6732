"""posed_landmarks: rotation about the face centre in pose.py's convention, framing, yaw symmetry."""

import numpy as np
import pytest

from facegen.conditions import topology as topo
from facegen.conditions.render import FRAME_MARGIN, posed_landmarks, render_landmark_image
from facegen.conditions.template import CANONICAL_CENTER, CANONICAL_RMS_RADIUS, estimate_pose, neutral_template


def _pose(yaw=0.0, pitch=0.0, roll=0.0, base=None):
    base = neutral_template()[None] if base is None else base[None]
    return posed_landmarks(base, yaw, pitch, roll)[0].astype(np.float64)


def test_zero_angles_only_reframe():
    t = neutral_template()
    np.testing.assert_allclose(_pose(), t, atol=1e-6)
    shifted = t.astype(np.float64) * 0.5 + 0.1  # smaller, off-centre copy comes back framed
    np.testing.assert_allclose(_pose(base=shifted), t, atol=1e-6)


def test_plus_and_minus_30_yaw_mirror_the_outline_extent():
    oval = topo.face_oval_polygon()
    cx = CANONICAL_CENTER[0]
    plus, minus = _pose(30)[oval, 0], _pose(-30)[oval, 0]
    assert cx - plus.min() == pytest.approx(minus.max() - cx, abs=1e-4)
    assert plus.max() - cx == pytest.approx(cx - minus.min(), abs=1e-4)
    assert abs((cx - plus.min()) - (plus.max() - cx)) > 0.03  # and yaw really is asymmetric


def test_plus_and_minus_30_yaw_mirror_in_the_rendered_images():
    size = 256
    colour = np.array(topo.REGION_COLORS["face_oval"], dtype=np.uint8)

    def oval_columns(yaw):
        img = render_landmark_image(_pose(yaw), size)
        cols = np.nonzero((img == colour).all(-1).any(0))[0]
        return cols.min(), cols.max()

    (p_lo, p_hi), (m_lo, m_hi) = oval_columns(30), oval_columns(-30)
    centre = size / 2 - 0.5
    assert abs((centre - p_lo) - (m_hi - centre)) <= 1.5
    assert abs((p_hi - centre) - (centre - m_lo)) <= 1.5
    assert (centre - p_lo) - (p_hi - centre) > 5  # the extents really differ (not a frontal face)


@pytest.mark.parametrize("angle", [15.0, 30.0, 60.0])
def test_positive_yaw_moves_the_nose_tip_to_image_right(angle):
    frontal = _pose()[topo.NOSE_TIP]
    assert _pose(angle)[topo.NOSE_TIP, 0] > frontal[0] + 0.01
    assert _pose(-angle)[topo.NOSE_TIP, 0] < frontal[0] - 0.01


def test_positive_pitch_moves_the_nose_tip_up_and_roll_is_clockwise():
    frontal = _pose()
    assert _pose(pitch=20)[topo.NOSE_TIP, 1] < frontal[topo.NOSE_TIP, 1] - 0.01
    rolled = _pose(roll=20)
    # clockwise on screen (y down): the chin, below the centre, swings to image left
    assert rolled[topo.CHIN, 0] < frontal[topo.CHIN, 0] - 0.02


@pytest.mark.parametrize("angles", [(35.0, -15.0, 10.0), (-50.0, 20.0, -25.0)])
def test_posed_set_measures_back_to_its_angles(angles):
    np.testing.assert_allclose(estimate_pose(_pose(*angles)), angles, atol=1e-3)


def test_every_pose_stays_inside_the_frame_with_constant_size_when_it_fits():
    rng = np.random.default_rng(0)
    n = 64
    yaw, pitch, roll = rng.uniform(-90, 90, n), rng.uniform(-60, 60, n), rng.uniform(-90, 90, n)
    base = np.repeat(neutral_template()[None], n, axis=0)
    out = posed_landmarks(base, yaw, pitch, roll)
    assert out.shape == (n, 478, 3) and out.dtype == np.float32
    assert out[..., :2].min() >= FRAME_MARGIN - 1e-6 and out[..., :2].max() <= 1 - FRAME_MARGIN + 1e-6
    mild = posed_landmarks(base[:3], [20, -30, 0], [10, 0, -15], [0, 10, 20])
    rms = np.sqrt(((mild - mild.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1))
    np.testing.assert_allclose(rms, CANONICAL_RMS_RADIUS, rtol=1e-5)  # no shrink needed: same size
    np.testing.assert_allclose(mild.mean(1), np.broadcast_to(CANONICAL_CENTER, (3, 3)), atol=1e-6)


def test_bad_base_shape_raises():
    with pytest.raises(ValueError, match="base landmarks"):
        posed_landmarks(neutral_template(), 0, 0, 0)
