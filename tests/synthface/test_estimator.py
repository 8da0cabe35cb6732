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


def test_observable_identity_similarity_ignores_unreadable_features_and_reads_the_rest():
    """With a feature's reliability 0, changing only that feature leaves the similarity at 1; changing a
    reliable feature lowers it; no reliability is the plain cosine of the embeddings."""
    from facegen.synthface.estimator import features_from_embedding, observable_identity_similarity
    from facegen.synthface.params import IDENTITY_DIM, embedding_projection

    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, IDENTITY_DIM))
    project = embedding_projection()

    def embed(f):
        z = f @ project
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    base = embed(features)
    recovered = features_from_embedding(base)
    assert np.allclose(recovered / np.linalg.norm(recovered), features / np.linalg.norm(features), atol=1e-8)
    reliability = np.ones(IDENTITY_DIM)
    reliability[4] = 0.0
    moved_unreadable, moved_readable = features.copy(), features.copy()
    moved_unreadable[0, 4] += 3.0
    moved_readable[0, 0] += 3.0
    same = observable_identity_similarity(base, embed(moved_unreadable), reliability)[0, 0]
    different = observable_identity_similarity(base, embed(moved_readable), reliability)[0, 0]
    assert same == pytest.approx(1.0, abs=1e-9) and different < 0.9
    plain = observable_identity_similarity(base, embed(moved_unreadable), None)[0, 0]
    assert plain == pytest.approx(float(base[0] @ embed(moved_unreadable)[0])) and plain < 0.95


def test_shipped_estimator_carries_its_identity_reliability_and_it_helps(fresh):
    """The shipped weights record a held-out R^2 per identity feature; comparing on them ranks fresh renders'
    own identity at least as well as the plain cosine."""
    rows, specs, images = fresh
    runner = load_estimator()
    assert runner.reliability is not None and runner.reliability.shape == (23,)
    assert runner.reliability.max() > 0.8 and runner.reliability.min() < 0.3  # some features are sub-pixel
    m = runner.measure(images)
    identity = np.array([r["identity_index"] for r in rows])
    uniq = np.unique(identity)
    refs = identity_embedding(np.stack([specs[int(np.flatnonzero(identity == u)[0])].identity for u in uniq]))
    plain = np.mean(uniq[np.argmax(m.embedding @ refs.T, axis=1)] == identity)
    observable = np.mean(uniq[np.argmax(runner.identity_similarity(m.embedding, refs), axis=1)] == identity)
    assert observable >= plain and observable > 0.9
