"""The shipped synthface proxy estimator against the renderer's truth (fresh renders, held-out identities),
and the `synthface` analysis backends built on it."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.analysis.headpose import head_pose
from facegen.analysis.registry import get_backend
from facegen.synthface.dataset import heldout_config, spec_from_row, spec_row
from facegen.synthface.estimator import load_estimator
from facegen.synthface.params import emotion_posterior, identity_embedding
from facegen.synthface.render import render_face

N = 160


@pytest.fixture(scope="module")
def fresh():
    """N renders of 16 held-out identities with a seed no training or evaluation render used."""
    config = heldout_config("unused", N, num_identities=16, seed=7)
    rows = [spec_row(i, config) for i in range(N)]
    specs = [spec_from_row(r) for r in rows]
    images = np.stack([render_face(s).image for s in specs])
    return rows, specs, images


def test_estimator_recovers_pose_emotion_and_identity_of_fresh_renders(fresh):
    rows, specs, images = fresh
    m = load_estimator().measure(images)
    for axis in ("yaw", "pitch", "roll"):
        truth = np.array([r[axis] for r in rows])
        rmse = float(np.sqrt(np.mean((getattr(m, axis) - truth) ** 2)))
        assert rmse < 4.0, f"{axis} RMSE {rmse:.2f} deg"
    emotion = np.array([r["emotion"] for r in rows])
    bayes = emotion_posterior(np.stack([s.expression for s in specs])).argmax(1)
    assert np.mean(m.emotion == emotion) > 0.6
    assert np.mean(m.emotion == emotion) > np.mean(bayes == emotion) - 0.3  # close to the ceiling
    identity = np.array([r["identity_index"] for r in rows])
    uniq = np.unique(identity)
    refs = identity_embedding(np.stack([specs[int(np.flatnonzero(identity == u)[0])].identity for u in uniq]))
    rank1 = np.mean(uniq[np.argmax(m.embedding @ refs.T, axis=1)] == identity)
    assert rank1 > 0.5, f"identity rank-1 {rank1:.2f} among {len(uniq)}"
    expr = np.stack([s.expression for s in specs])
    assert np.sqrt(np.mean((m.expression - expr) ** 2)) < 0.2


def test_estimator_is_not_fooled_by_a_mirrored_face(fresh):
    """Mirroring flips yaw and roll: a pose estimator that ignores the image would not notice."""
    rows, _, images = fresh
    m = load_estimator().measure(images[:32])
    mirrored = load_estimator().measure(images[:32, :, ::-1].copy())
    assert np.corrcoef(m.yaw, -mirrored.yaw)[0, 1] > 0.95
    assert np.corrcoef(m.yaw, [r["yaw"] for r in rows[:32]])[0, 1] > 0.95


def test_synthface_backends_measure_what_was_rendered(fresh):
    rows, specs, images = fresh
    landmarks = get_backend("synthface", kind="landmarks")
    identity = get_backend("synthface", kind="identity")
    emotion = get_backend("synthface", kind="emotion")
    errors, sims, hits = [], [], []
    for row, spec, image in zip(rows[:24], specs[:24], images[:24]):
        face = landmarks.detect(image)
        assert face is not None and face.points.shape == (478, 3)
        pose = head_pose(face)
        errors.append(max(abs(pose.yaw - row["yaw"]), abs(pose.pitch - row["pitch"]), abs(pose.roll - row["roll"])))
        sims.append(float(identity.embed(image, face) @ identity_embedding(spec.identity)))
        (est,) = emotion.predict([image])
        hits.append(est.emotion == row["emotion"])
        assert abs(float(est.probs.sum()) - 1) < 1e-4
    assert np.median(errors) < 5.0
    assert np.mean(sims) > 0.5
    assert np.mean(hits) > 0.5
