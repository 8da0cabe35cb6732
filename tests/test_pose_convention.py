"""The head-pose convention every planner/estimator shares (facegen.conditions.pose)."""

import numpy as np
import pytest

from facegen.conditions.pose import angles_from_matrix, rotate_landmarks, rotation_matrix

ORIGIN = np.zeros(3)
NOSE = np.array([[0.0, 0.0, -1.0]])  # points at the camera (z away from the camera)


def test_round_trip_over_a_grid_of_angles():
    rng = np.random.default_rng(0)
    yaw, pitch, roll = rng.uniform(-80, 80, 500), rng.uniform(-80, 80, 500), rng.uniform(-170, 170, 500)
    back = angles_from_matrix(rotation_matrix(yaw, pitch, roll))
    np.testing.assert_allclose(np.stack(back), np.stack([yaw, pitch, roll]), atol=1e-9)


def test_matrices_are_proper_rotations():
    r = rotation_matrix([10.0, -40.0], [5.0, 30.0], [0.0, 90.0])
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)


@pytest.mark.parametrize(
    ("angles", "axis", "sign"),
    [((30, 0, 0), 0, +1), ((-30, 0, 0), 0, -1), ((0, 30, 0), 1, -1), ((0, -30, 0), 1, +1)],
)
def test_sign_convention_of_yaw_and_pitch(angles, axis, sign):
    nose = rotate_landmarks(NOSE, *angles, center=ORIGIN)[0]
    assert np.sign(nose[axis]) == sign  # + yaw: nose to image right (+x); + pitch: nose up (-y)


def test_positive_roll_is_clockwise_in_the_image():
    right = rotate_landmarks(np.array([[1.0, 0.0, 0.0]]), 0, 0, 30, center=ORIGIN)[0]
    assert right[1] > 0  # y points down, so +x turning toward +y is clockwise on screen


def test_rotation_about_the_face_centre_keeps_the_centre_and_broadcasts_over_a_batch():
    pts = np.random.default_rng(1).normal(size=(3, 478, 3))
    out = rotate_landmarks(pts, np.array([0.0, 20.0, -20.0]), 0.0, 0.0)
    np.testing.assert_allclose(out.mean(axis=1), pts.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(out[0], pts[0], atol=1e-12)
    assert not np.allclose(out[1], pts[1])
