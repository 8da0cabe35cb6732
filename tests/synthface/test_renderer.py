"""The synthface renderer against its own definition: determinism, pose convention, identity space,
expression model, emotion posterior and the extract-compatible dataset layout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facegen.conditions import topology as topo
from facegen.conditions.template import estimate_pose
from facegen.labels import EXTRACT_SCHEMA, NUM_EMOTIONS
from facegen.synthface.dataset import RenderConfig, render_dataset, spec_from_row, spec_row
from facegen.synthface.params import (
    EMOTION_EXPRESSIONS,
    EXPRESSION_DIM,
    FaceSpec,
    Nuisance,
    emotion_posterior,
    identity_embedding,
    identity_params,
    sample_expression,
)
from facegen.synthface.render import render_face

NEUTRAL_LIGHT = Nuisance(0.0, 10.0, (0.5, 0.5, 0.5), 1.0, (0.0, 0.0))


def spec(yaw=0.0, pitch=0.0, roll=0.0, identity=3, expression=None, nuisance=NEUTRAL_LIGHT) -> FaceSpec:
    expr = np.zeros(EXPRESSION_DIM) if expression is None else np.asarray(expression, float)
    return FaceSpec(identity_params(identity), expr, yaw, pitch, roll, nuisance)


def test_render_is_deterministic_and_shaded():
    a = render_face(spec(yaw=20))
    b = render_face(spec(yaw=20))
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and np.array_equal(a.landmarks, b.landmarks)
    face = a.image[a.mask]
    assert face.std(0).mean() > 8  # lit triangles, not a flat fill
    other_light = render_face(spec(yaw=20, nuisance=replace(NEUTRAL_LIGHT, light_azimuth=40.0)))
    assert np.abs(other_light.image.astype(int) - a.image.astype(int)).mean() > 1.0
    assert np.array_equal(other_light.landmarks, a.landmarks)  # light is a nuisance, not geometry


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (45, 0, 0), (-50, 10, 0), (0, -25, 0), (10, 20, 20), (0, 0, -25)])
def test_rendered_landmarks_follow_the_pose_convention(yaw, pitch, roll):
    """The template fit (an estimator written for real MediaPipe meshes) recovers the rendered pose."""
    face = render_face(spec(yaw, pitch, roll))
    est = np.array(estimate_pose(face.landmarks.astype(np.float64)), dtype=float)
    assert np.abs(est - np.array([yaw, pitch, roll])).max() < 4.0


def test_positive_yaw_turns_the_nose_to_image_right_and_positive_pitch_up():
    front = render_face(spec()).landmarks
    right = render_face(spec(yaw=40)).landmarks
    up = render_face(spec(pitch=25)).landmarks
    assert right[topo.NOSE_TIP, 0] - right[:, 0].mean() > front[topo.NOSE_TIP, 0] - front[:, 0].mean() + 0.03
    assert up[topo.NOSE_TIP, 1] - up[:, 1].mean() < front[topo.NOSE_TIP, 1] - front[:, 1].mean() - 0.02


def test_identity_embedding_is_a_smooth_function_of_the_parameters():
    p = identity_params(7)
    near = p.copy()
    near[:3] += 0.1
    far = identity_params(8)
    e, e_near, e_far = identity_embedding(np.stack([p, near, far]))
    assert abs(np.linalg.norm(e) - 1) < 1e-5
    assert e @ e_near > 0.95 > e @ e_far
    many = identity_embedding(np.stack([identity_params(i) for i in range(200)]))
    sims = many @ many.T
    assert np.abs(sims[np.triu_indices(200, 1)]).mean() < 0.3  # random identities are well apart


def test_identity_shape_changes_the_mesh_and_appearance_changes_the_pixels():
    a, b = render_face(spec(identity=1)), render_face(spec(identity=2))
    assert np.abs(a.landmarks - b.landmarks).max() > 0.01
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 5


def test_expression_parameters_move_their_regions():
    neutral = render_face(spec()).landmarks
    opened = render_face(spec(expression=np.eye(EXPRESSION_DIM)[0])).landmarks  # mouth_open
    raised = render_face(spec(expression=np.eye(EXPRESSION_DIM)[5])).landmarks  # brow_raise
    lower_lip, chin = 14, topo.CHIN
    assert opened[lower_lip, 1] - neutral[lower_lip, 1] > 0.02
    assert opened[chin, 1] > neutral[chin, 1]
    brow = 105  # a point on the subject's right eyebrow
    assert raised[brow, 1] < neutral[brow, 1] - 0.01


def test_emotion_classes_have_distinct_expressions_and_a_calibrated_posterior():
    rng = np.random.default_rng(0)
    hits = []
    for c in range(NUM_EMOTIONS):
        for _ in range(40):
            expr, _ = sample_expression(c, rng)
            post = emotion_posterior(expr)
            assert abs(post.sum() - 1) < 1e-5
            hits.append(post.argmax() == c)
    assert np.mean(hits) > 0.85  # classes overlap only a little
    d = np.linalg.norm(EMOTION_EXPRESSIONS[:, None] - EMOTION_EXPRESSIONS[None], axis=-1)
    assert d[np.triu_indices(NUM_EMOTIONS, 1)].min() > 0.8


def test_plan_rows_depend_only_on_seed_and_index():
    small, big = RenderConfig("x", 5, 10), RenderConfig("x", 500, 10)
    assert spec_row(3, small)["yaw"] == spec_row(3, big)["yaw"]
    assert spec_row(3, small)["yaw"] != spec_row(3, RenderConfig("x", 5, 10, seed=1))["yaw"]
    face = render_face(spec_from_row(spec_row(4, small)))
    assert face.image.shape == (64, 64, 3)


def test_render_dataset_writes_the_extract_layout_and_resumes(tmp_path):
    out = tmp_path / "sf"
    config = RenderConfig(str(out), 12, 4, images_per_shard=6)
    render_dataset(config, progress=False)
    labels = pq.read_table(out / "labels.parquet")
    assert labels.num_rows == 12
    assert set(EXTRACT_SCHEMA.names) <= set(labels.column_names)
    assert {"truth_identity", "truth_expression"} <= set(labels.column_names)
    with tarfile.open(out / "shards" / "000001.tar") as tar:
        names = sorted(m.name for m in tar)
        assert {n.split(".", 1)[1] for n in names} == {"jpg", "json", "mask.png"}
        key = names[0].split(".")[0]
        image = Image.open(io.BytesIO(tar.extractfile(f"{key}.jpg").read()))
        meta = json.loads(tar.extractfile(f"{key}.json").read())
    assert image.size == (64, 64) and meta["emotion_name"]
    stats = (out / "shards" / "000000_stats.json").read_bytes()
    render_dataset(config, progress=False)  # resume: nothing redone
    assert (out / "shards" / "000000_stats.json").read_bytes() == stats

    from facegen.train.data import load_labels

    train_labels = load_labels(out)
    assert len(train_labels) == 12 and train_labels.landmarks.shape == (12, 478, 3)
    assert np.allclose(np.linalg.norm(train_labels.embeddings, axis=1), 1, atol=1e-5)


def test_cli_render_and_bad_size(tmp_path):
    cmd = [sys.executable, "-m", "facegen.cli.main", "synthface", "render", "--n", "4", "--identities", "2",
           "--workers", "0", "--out", str(tmp_path / "cli")]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert pq.read_table(tmp_path / "cli" / "labels.parquet").num_rows == 4
    bad = subprocess.run(cmd[:-2] + ["--size", "30", "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error:") and "--size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
