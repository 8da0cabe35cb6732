"""Neutral template and the symmetry-based pose fit (consistent with facegen.conditions.pose)."""

import numpy as np
import pytest

from facegen.conditions import template as tpl
from facegen.conditions.pose import rotate_landmarks
from facegen.conditions.topology import mirror_indices


def test_template_shape_dtype_and_read_only():
    t = tpl.neutral_template()
    assert t.shape == (478, 3) and t.dtype == np.float32
    assert tpl.neutral_template() is t  # cached
    with pytest.raises(ValueError):
        t[0, 0] = 0.0


def test_template_is_canonically_framed_inside_the_image():
    t = tpl.neutral_template().astype(np.float64)
    np.testing.assert_allclose(t.mean(0), tpl.CANONICAL_CENTER, atol=1e-6)
    rms = np.sqrt(((t - t.mean(0)) ** 2).sum(1).mean())
    assert rms == pytest.approx(tpl.CANONICAL_RMS_RADIUS, rel=1e-5)
    assert t[:, :2].min() > 0.05 and t[:, :2].max() < 0.95
    # face orientation: forehead above chin, subject's left eye on image right, nose toward the camera
    assert t[10, 1] < t[152, 1] and t[263, 0] > t[33, 0] and t[1, 2] < t[:, 2].mean()


def test_template_is_frontal_by_the_symmetry_fit():
    yaw, pitch, roll = tpl.estimate_pose(tpl.neutral_template())
    np.testing.assert_allclose([yaw, pitch, roll], 0.0, atol=0.05)


def test_template_is_left_right_symmetric():
    t = tpl.neutral_template().astype(np.float64)
    m = mirror_indices()
    reflected = t[m].copy()
    reflected[:, 0] = 1.0 - reflected[:, 0]
    np.testing.assert_allclose(reflected, t, atol=1e-6)


@pytest.mark.parametrize("angles", [(25.0, 0.0, 0.0), (-40.0, 10.0, 0.0), (0.0, -20.0, 15.0), (30.0, 15.0, -20.0)])
def test_symmetry_fit_recovers_rotations_applied_with_pose_py(angles):
    posed = rotate_landmarks(tpl.neutral_template(), *angles)
    np.testing.assert_allclose(tpl.estimate_pose(posed), angles, atol=1e-6)
    np.testing.assert_allclose(tpl.frontalize(posed), tpl.neutral_template(), atol=1e-6)


def test_pose_fit_and_framing_broadcast_over_a_batch():
    base = np.stack([rotate_landmarks(tpl.neutral_template(), y, 0, 0) * s for y, s in [(10, 1.0), (-20, 0.5)]])
    yaw, pitch, roll = tpl.estimate_pose(base)
    np.testing.assert_allclose(yaw, [10, -20], atol=1e-6)
    framed = tpl.canonical_frame(base)
    np.testing.assert_allclose(framed.mean(1), np.broadcast_to(tpl.CANONICAL_CENTER, (2, 3)), atol=1e-9)


def test_symmetrize_of_an_asymmetric_set_differs_and_is_idempotent():
    rng = np.random.default_rng(0)
    noisy = tpl.neutral_template() + rng.normal(0, 0.003, (478, 3))
    once = tpl.symmetrize(noisy)
    assert not np.allclose(once, noisy, atol=1e-4)
    np.testing.assert_allclose(tpl.symmetrize(once), once, atol=1e-12)
