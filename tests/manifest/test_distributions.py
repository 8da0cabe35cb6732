"""Planned per-bin counts match the targets within rounding, for every distribution type."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from facegen.labels import CONTROL_SETS, EMOTION_NAMES
from facegen.manifest import plan_samples, validate_manifest
from facegen.manifest.distributions import apportion, apportion_quotas


def _manifest(targets: dict, count: int = 7, per_id: int = 3, **extra):
    data = {
        "version": 1,
        "seed": 3,
        "output": {"samples_per_shard": 5},
        "identities": {"random": {"count": count, "max_similarity": 0.3}},
        "images_per_identity": per_id,
        "targets": targets,
        **extra,
    }
    return validate_manifest(data, source="<test>", lines={}, base_dir=Path.cwd())


def _hist(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts per [lo, hi) bin, last bin closed, like the planner's strata."""
    return np.histogram(values, bins=edges)[0].tolist()


def test_apportion_hand_computed():
    assert apportion([0.5, 0.3, 0.2], 21).tolist() == [11, 6, 4]  # 10.5, 6.3, 4.2
    assert apportion([1, 1, 1], 10).tolist() == [4, 3, 3]  # ties -> lower index
    assert apportion([0, 1], 5).tolist() == [0, 5]
    assert apportion_quotas(np.array([17.5] * 6 + [5.0]), 110).tolist() == [18, 18, 18, 17, 17, 17, 5]


@pytest.mark.parametrize("total", [1, 2, 13, 997])
def test_apportion_is_within_one_of_quota(total):
    w = np.random.default_rng(total).random(11)
    counts = apportion(w, total)
    assert counts.sum() == total
    assert (np.abs(counts - total * w / w.sum()) < 1).all()


def test_emotion_probabilities_hand_computed():
    plan = plan_samples(_manifest({"emotion": {"happy": 0.5, "sad": 0.3, "fear": 0.2}}))  # 21 rows
    names = plan.column("emotion_name").to_pylist()
    assert {n: names.count(n) for n in set(names)} == {"happy": 11, "sad": 6, "fear": 4}
    assert all(EMOTION_NAMES[e] == n for e, n in zip(plan.column("emotion").to_pylist(), names))


def test_emotion_uniform_and_single_class():
    plan = plan_samples(_manifest({"emotion": "uniform"}, count=4, per_id=4))
    assert np.bincount(plan.column("emotion").to_numpy(), minlength=8).tolist() == [2] * 8
    plan = plan_samples(_manifest({"emotion": "fear"}))
    assert set(plan.column("emotion_name").to_pylist()) == {"fear"}


def test_controls_distribution():
    plan = plan_samples(_manifest({"controls": {"id": 0.25, "id+lmk+emo": 0.75}}, count=10, per_id=10))
    c = plan.column("controls").to_pylist()
    assert (c.count("id"), c.count("id+lmk+emo"), c.count("id+lmk")) == (25, 75, 0)
    assert set(c) <= set(CONTROL_SETS)


def test_uniform_pose_strata_and_range():
    plan = plan_samples(_manifest({"pose": {"yaw": {"uniform": [-30, 30], "bins": 4}}}, count=5, per_id=10))  # 50 rows
    yaw = plan.column("yaw").to_numpy()
    assert yaw.min() >= -30 and yaw.max() <= 30
    assert _hist(yaw, [-30, -15, 0, 15, 30]) == [13, 13, 12, 12]  # 12.5 each -> ties to lower bins
    assert plan.column("pitch").to_numpy().tolist() == [0.0] * 50  # default: frontal


def test_normal_pose_strata_match_truncated_normal_mass():
    spec = {"normal": {"mean": 5, "std": 10, "clip": [-20, 30]}, "bins": 5}
    n = 13 * 17
    plan = plan_samples(_manifest({"pose": {"pitch": spec}}, count=13, per_id=17))
    pitch = plan.column("pitch").to_numpy()
    edges = np.linspace(-20, 30, 6)
    nd = NormalDist(5, 10)
    mass = np.diff([nd.cdf(e) for e in edges])
    assert _hist(pitch, edges.tolist()) == apportion(mass, n).tolist()
    assert pitch.min() >= -20 and pitch.max() <= 30
    assert abs(float(np.median(pitch)) - 5) < 2.5


def test_normal_default_clip_is_three_std():
    plan = plan_samples(_manifest({"pose": {"roll": {"normal": {"mean": 0, "std": 4}}}}, count=10, per_id=20))
    roll = plan.column("roll").to_numpy()
    assert roll.min() >= -12 and roll.max() <= 12


def test_histogram_pose_counts():
    hist = {"edges": [-40, -10, 10, 40], "weights": [1, 2, 1]}
    plan = plan_samples(_manifest({"pose": {"yaw": {"histogram": hist}}}, count=6, per_id=5))  # 30 rows
    yaw = plan.column("yaw").to_numpy()
    assert _hist(yaw, hist["edges"]) == [8, 15, 7]  # 7.5, 15, 7.5


def test_constant_angle():
    plan = plan_samples(_manifest({"pose": {"roll": 12.5}}))
    assert set(plan.column("roll").to_pylist()) == {12.5}


def test_identities_each_get_images_per_identity_and_are_mixed_over_shards():
    plan = plan_samples(_manifest({}, count=6, per_id=5))
    ident = plan.column("identity").to_numpy()
    assert np.bincount(ident).tolist() == [5] * 6
    assert ident.tolist() != sorted(ident.tolist())  # shuffled, not blocked by identity


def test_prior_valence_arousal_and_override():
    m = _manifest({"emotion": "happy", "valence_arousal": {"happy": {"valence": 0.9, "valence_std": 0.0, "arousal": -0.2, "arousal_std": 0.0}}})
    plan = plan_samples(m)
    assert np.allclose(plan.column("valence").to_numpy(), 0.9)
    assert np.allclose(plan.column("arousal").to_numpy(), -0.2)
    probs = np.array(plan.column("emotion_probs").to_pylist())
    assert np.allclose(probs.sum(1), 1, atol=1e-6) and (probs.argmax(1) == 1).all()
