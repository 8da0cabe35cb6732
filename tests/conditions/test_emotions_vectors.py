"""Emotion vectors: the V/A prior table, peaked class vectors, label parsing."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.conditions.emotions import (
    VA_PRIOR,
    class_index,
    emotion_vectors,
    peaked_probs,
    prior_table,
    sample_valence_arousal,
)
from facegen.labels import EMOTION_NAMES


def test_prior_table_covers_every_class_in_range():
    assert set(VA_PRIOR) == set(EMOTION_NAMES)
    table = prior_table()
    assert table.shape == (8, 4)
    assert (np.abs(table[:, :2]) <= 1).all() and (table[:, 2:] > 0).all()
    # circumplex sanity: happy is the most positive, sad/fear/anger negative, surprise/fear aroused
    v = dict(zip(EMOTION_NAMES, table[:, 0]))
    a = dict(zip(EMOTION_NAMES, table[:, 1]))
    assert max(v, key=v.get) == "happy"
    assert v["sad"] < 0 and v["fear"] < 0 and v["anger"] < 0
    assert a["surprise"] > a["neutral"] and a["fear"] > a["sad"]


def test_overrides_replace_only_given_fields():
    table = prior_table({"sad": {"valence": -0.9, "arousal": None}})
    assert table[2, 0] == -0.9 and table[2, 1] == VA_PRIOR["sad"].arousal
    assert np.array_equal(np.delete(table, 2, 0), np.delete(prior_table(), 2, 0))


def test_peaked_probs_rows():
    probs = peaked_probs(0.8)
    assert probs.shape == (8, 8) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    assert np.allclose(np.diag(probs), 0.8, atol=1e-6)
    assert (probs.argmax(1) == np.arange(8)).all()
    # leftover mass goes to classes near in V/A: fear leaks more to anger than to happy
    fear, anger, happy = (EMOTION_NAMES.index(n) for n in ("fear", "anger", "happy"))
    assert probs[fear, anger] > probs[fear, happy]
    assert np.allclose(peaked_probs(1.0), np.eye(8))
    with pytest.raises(ValueError):
        peaked_probs(0.0)


def test_sampled_valence_arousal_follow_class_and_are_seeded():
    classes = np.repeat(np.arange(8), 2000)
    v, a = sample_valence_arousal(classes, np.random.default_rng(0))
    assert v.dtype == np.float32 and (np.abs(v) <= 1).all() and (np.abs(a) <= 1).all()
    means = np.array([v[classes == k].mean() for k in range(8)])
    assert np.allclose(means, prior_table()[:, 0], atol=0.03)
    v2, _ = sample_valence_arousal(classes, np.random.default_rng(0))
    assert np.array_equal(v, v2)


def test_emotion_vector_layout():
    vec = emotion_vectors(np.array([0.5]), np.array([-0.25]), peaked_probs()[[1]])
    assert vec.shape == (1, 10)
    assert vec[0, 0] == 0.5 and vec[0, 1] == -0.25 and vec[0, 2:].argmax() == 1


@pytest.mark.parametrize("label, index", [("Happy", 1), ("contempt", 7), (" Neutral ", 0), (6, 6)])
def test_class_index(label, index):
    assert class_index(label) == index


@pytest.mark.parametrize("label", ["joy", 8, -1, None])
def test_class_index_rejects(label):
    with pytest.raises(ValueError):
        class_index(label)
