"""Pairing rules, fallbacks, worker sharding without duplicates, resumable data position, sample tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pyarrow as pa
import pyarrow.parquet as pq

from facegen.errors import FacegenError
from facegen.train.config import PairingConfig
from facegen.train.data import Labels, PairStream, SampleBuilder, TarImages, load_labels
from facegen.train.pairs import build_pair_index, expression_descriptors, expression_distances


@pytest.fixture(scope="module")
def labels(extracted_dir):
    return load_labels(extracted_dir)


def _pose(labels, a, b):
    f = labels.frame
    return abs(f.yaw[a] - f.yaw[b]) + abs(f.pitch[a] - f.pitch[b])


def _expr(labels, a, b):
    rows = labels.frame.iloc[[a, b]]
    desc = expression_descriptors(labels.landmarks[[a, b]], rows.yaw, rows.pitch, rows.roll)
    return expression_distances(desc)[0, 1]


def test_expression_distance_ignores_pose_but_sees_the_mouth(labels):
    from facegen.conditions.pose import rotate_landmarks
    from facegen.conditions.template import neutral_template

    t = neutral_template().astype(np.float64)
    turned = rotate_landmarks(t, 30, -10, 5)
    opened = t.copy()
    opened[t[:, 1] > np.quantile(t[:, 1], 0.8), 1] += 0.06
    desc = expression_descriptors(np.stack([t, turned, opened]), [0, 30, 0], [0, -10, 0], [0, 5, 0])
    d = expression_distances(desc)
    assert d[0, 1] < 1e-4 < 0.05 < d[0, 2]


def test_lmk_partners_same_identity_other_image_differing_pose_and_expression(labels):
    cfg = PairingConfig()
    index = build_pair_index(labels, "pretrain-lmk", cfg)
    f, fallbacks = labels.frame, 0
    for t in range(len(labels)):
        cand = index.candidates(t)
        assert len(cand) > 0 and t not in cand
        same = [q for q in range(len(labels)) if q != t and f.identity[q] == f.identity[t]]
        pose_ok = {q for q in same if _pose(labels, t, q) >= cfg.lmk_min_pose_deg}
        expr_ok = {q for q in same if _expr(labels, t, q) >= cfg.lmk_min_expression}
        if pose_ok & expr_ok:
            assert set(cand.tolist()) == pose_ok & expr_ok  # exactly the partners differing in both
        else:  # documented fallback: those differing in one of the two
            fallbacks += 1
            assert set(cand.tolist()) == pose_ok | expr_ok
    assert index.fallbacks == fallbacks < len(labels) // 2


def _four_images(with_both: bool = True) -> Labels:
    """One identity: A frontal neutral, B turned neutral, C frontal open mouth, D turned open mouth."""
    from facegen.conditions.pose import rotate_landmarks
    from facegen.conditions.template import neutral_template

    t = neutral_template().astype(np.float64)
    opened = t.copy()
    opened[t[:, 1] > np.quantile(t[:, 1], 0.8), 1] += 0.06
    rows = [("A", 0.0, t, 0), ("B", 25.0, t, 0), ("C", 0.0, opened, 1), ("D", 25.0, opened, 1)]
    rows = rows if with_both else rows[:3]
    frame = pd.DataFrame({
        "key": [r[0] for r in rows], "identity": "p", "yaw": [r[1] for r in rows], "pitch": 0.0, "roll": 0.0,
        "emotion": [r[3] for r in rows], "valence": 0.0, "arousal": 0.0,
    })
    landmarks = np.stack([rotate_landmarks(r[2], r[1], 0, 0) for r in rows]).astype(np.float32)
    n = len(rows)
    return Labels(frame, np.ones((n, 512), np.float32), landmarks, np.full((n, 8), 0.125, np.float32))


def test_lmk_rule_needs_pose_and_expression_to_differ_with_documented_fallback():
    """Section 3.2: the LMK partner has a different pose AND a different expression; when no image of the
    identity has both, any image differing in one of them (drawn uniformly), counted as a fallback."""
    cfg = PairingConfig()
    both = build_pair_index(_four_images(), "pretrain-lmk", cfg)
    # A's only valid partner is D (B differs only in pose, C only in expression); likewise B <-> C
    assert [list(both.candidates(t)) for t in range(4)] == [[3], [2], [1], [0]]
    assert both.fallbacks == 0
    fallback = build_pair_index(_four_images(with_both=False), "pretrain-lmk", cfg)
    assert sorted(fallback.candidates(0)) == [1, 2]  # B (pose only) and C (expression only)
    assert list(fallback.candidates(1)) == [2] and list(fallback.candidates(2)) == [1]  # B <-> C is valid
    assert fallback.fallbacks == 1
    # nothing differs in either: the single most different other image
    same = build_pair_index(_four_images(), "pretrain-lmk", PairingConfig(lmk_min_pose_deg=90, lmk_min_expression=9))
    assert list(same.candidates(0)) == [3] and same.fallbacks == 4


def test_emo_partners_other_expression_same_pose(labels):
    cfg = PairingConfig()
    index = build_pair_index(labels, "pretrain-emo", cfg)
    assert index.fallbacks == 0
    for t in range(len(labels)):
        for p in index.candidates(t):
            f = labels.frame
            assert p != t and f.identity[p] == f.identity[t]
            assert _pose(labels, t, p) <= cfg.emo_max_pose_deg
            assert f.emotion[p] != f.emotion[t] or _expr(labels, t, p) >= cfg.emo_min_expression


def test_fallbacks(labels):
    # identity person0 reduced to one image -> self-pair; EMO with an impossible pose window -> closest pose
    f = labels.frame
    keep = np.flatnonzero((f.identity != "person0").to_numpy() | (f.key == f.key[f.identity == "person0"].iloc[0]).to_numpy())
    one = Labels(f.iloc[keep].reset_index(drop=True), labels.embeddings[keep], labels.landmarks[keep], labels.emotion_probs[keep])
    idx = build_pair_index(one, "pretrain-lmk", PairingConfig())
    solo = int(np.flatnonzero(one.frame.identity == "person0")[0])
    assert list(idx.candidates(solo)) == [solo] and idx.fallbacks == 1
    strict = build_pair_index(labels, "pretrain-emo", PairingConfig(emo_max_pose_deg=0.0))
    assert strict.fallbacks == len(labels)
    for t in range(len(labels)):
        (p,) = strict.candidates(t)
        same = np.flatnonzero((f.identity == f.identity[t]).to_numpy() & (np.arange(len(labels)) != t))
        other_expr = [q for q in same if f.emotion[q] != f.emotion[t]]
        assert p in other_expr and _pose(labels, t, p) == min(_pose(labels, t, q) for q in other_expr)


def test_stream_shards_without_duplicates_and_resumes(labels):
    index = build_pair_index(labels, "joint", PairingConfig())
    n = len(labels)
    world, items = 2, 3
    streams = [PairStream(n, index, seed=7, world_rank=r, world_size=world) for r in range(world)]
    cursor, seen = 0, []
    for _ in range(n // (world * items)):  # exactly one epoch
        step_positions = []
        for s in streams:
            drawn, nxt = s.draw(cursor, items)
            step_positions += [d.position for d in drawn]
            seen += [d.target for d in drawn]
        assert len(set(step_positions)) == world * items
        cursor = nxt
    assert sorted(seen) == list(range(n))  # every target once per epoch, no duplicates across workers
    # a fresh stream (resumed process) at a saved cursor draws the same items and partners
    again = PairStream(n, index, seed=7, world_rank=1, world_size=world)
    a, _ = streams[1].draw(cursor, items)
    b, _ = again.draw(cursor, items)
    assert a == b
    # another seed reshuffles
    other = PairStream(n, index, seed=8, world_rank=0, world_size=1)
    assert [d.target for d in other.draw(0, n)[0]] != [d.target for d in PairStream(n, index, 7).draw(0, n)[0]]


def test_sample_builder_tensors(labels, extracted_dir):
    from facegen.conditions.masks import face_mask

    index = build_pair_index(labels, "joint", PairingConfig())
    builder = SampleBuilder(labels, TarImages(extracted_dir), resolution=32, landmark_image_size=48, resize=True)
    drawn, _ = PairStream(len(labels), index, 0).draw(0, 2)
    batch = builder.build(drawn)
    assert batch.images.shape == (2, 3, 32, 32) and -1 <= batch.images.min() and batch.images.max() <= 1
    assert batch.landmark_images.shape == (2, 3, 48, 48) and batch.landmark_images.max() > 0.5
    assert batch.emotions.shape == (2, 10) and batch.face_masks.shape == (2, 32, 32)
    d = drawn[0]
    tgt = labels.frame.iloc[d.target]
    assert d.partner != d.target and labels.frame.identity[d.partner] == tgt.identity
    np.testing.assert_allclose(batch.id_embeds[0].numpy(), labels.embeddings[d.partner], atol=1e-5)
    np.testing.assert_allclose(batch.emotions[0, :2].numpy(), [tgt.valence, tgt.arousal], atol=1e-6)
    np.testing.assert_allclose(batch.emotions[0, 2:].numpy(), labels.emotion_probs[d.target], atol=1e-6)
    expected_mask = face_mask(labels.landmarks[d.target], 32)
    assert (batch.face_masks[0].numpy() > 0.5).tolist() == expected_mask.tolist()
    rep = batch.repeat_interleave(3)
    assert rep.images.shape[0] == 6 and rep.positions[:3] == [d.position] * 3


def test_labels_are_read_exactly(labels, extracted_dir):
    import pyarrow.parquet as pq

    raw = pq.read_table(extracted_dir / "labels.parquet").to_pylist()
    by_key = {r["key"]: r for r in raw}
    assert labels.frame.key.tolist() == sorted(by_key)
    for i in (0, 7, len(raw) - 1):
        r = by_key[labels.frame.key[i]]
        np.testing.assert_array_equal(labels.landmarks[i].ravel(), np.float32(r["landmarks"]))
        np.testing.assert_array_equal(labels.embeddings[i], np.float32(r["embedding"]))
        assert labels.frame.identity[i] == r["identity"] and labels.frame.emotion[i] == r["emotion"]


def test_bad_data_folder_errors(tmp_path, extracted_dir):
    with pytest.raises(FacegenError, match="labels.parquet"):
        load_labels(tmp_path)
    pd.DataFrame({"key": ["a"]}).to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(FacegenError, match="missing column"):
        load_labels(tmp_path)
    with pytest.raises(FacegenError, match="no .tar shards"):
        TarImages(tmp_path)


def _copy_labels_with(src: Path, dst: Path, **columns) -> Path:
    table = pq.read_table(src / "labels.parquet")
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), values)
    dst.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dst / "labels.parquet")
    return dst


def test_placeholder_labels_from_null_backends_are_refused(tmp_path, extracted_dir):
    from facegen.train.data import check_labels_usable

    check_labels_usable(extracted_dir, "joint")  # the real fixture is fine for every stage
    n = pq.read_metadata(extracted_dir / "labels.parquet").num_rows
    no_emotion = _copy_labels_with(
        extracted_dir, tmp_path / "noemo",
        emotion=pa.array([-1] * n, pa.int8()), valence=pa.array([float("nan")] * n, pa.float32()),
    )
    check_labels_usable(no_emotion, "pretrain-lmk")  # LMK pre-training never reads emotion labels
    for stage in ("pretrain-emo", "joint"):
        with pytest.raises(FacegenError, match="no emotion label"):
            check_labels_usable(no_emotion, stage)
    zero_id = _copy_labels_with(
        extracted_dir, tmp_path / "noid",
        embedding=pa.array([[0.0] * 512] * n, pa.list_(pa.float32(), 512)),
    )
    with pytest.raises(FacegenError, match="all-zero identity embeddings"):
        check_labels_usable(zero_id, "pretrain-lmk")
