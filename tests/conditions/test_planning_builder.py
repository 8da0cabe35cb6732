"""ConditionBuilder: plan rows -> tensors in the pipeline contract's shapes, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from facegen.conditions.builder import ConditionBuilder
from facegen.errors import FacegenError
from facegen.manifest import validate_manifest, write_plan


def _manifest(**targets):
    data = {
        "version": 1,
        "seed": 2,
        "output": {"samples_per_shard": 4},
        "identities": {"random": {"count": 3, "max_similarity": 0.3}},
        "images_per_identity": 4,
        "targets": {
            "pose": {"yaw": {"uniform": [-40, 40]}},
            "controls": {"id": 0.25, "id+lmk": 0.25, "id+emo": 0.25, "id+lmk+emo": 0.25},
            **targets,
        },
    }
    return validate_manifest(data, source="<test>", lines={}, base_dir=Path.cwd())


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    m = _manifest()
    info = write_plan(m, out)
    return m, out, pq.read_table(info.plan_path)


def test_shapes_dtypes_and_values(planned):
    m, out, plan = planned
    cond = ConditionBuilder(out, m, landmark_image_size=64).build(plan)
    b = plan.num_rows
    assert cond.id_embeds.shape == (b, 512) and cond.id_embeds.dtype == torch.float32
    assert cond.landmark_images.shape == (b, 3, 64, 64) and cond.landmark_images.dtype == torch.float32
    assert 0.0 <= float(cond.landmark_images.min()) and float(cond.landmark_images.max()) <= 1.0
    assert float(cond.landmark_images.max()) > 0  # something was drawn
    assert cond.emotions.shape == (b, 10)
    assert cond.use_lmk.dtype == torch.bool and cond.use_emo.shape == (b,)
    ids = np.load(out / "identities.npy")
    assert np.array_equal(cond.id_embeds.numpy(), ids[plan.column("identity").to_numpy()])
    assert np.allclose(cond.emotions[:, 0].numpy(), plan.column("valence").to_numpy())
    assert np.allclose(cond.emotions[:, 2:].numpy(), np.array(plan.column("emotion_probs").to_pylist()))
    controls = plan.column("controls").to_pylist()
    assert cond.use_lmk.tolist() == ["lmk" in c for c in controls]
    assert cond.use_emo.tolist() == ["emo" in c for c in controls]
    assert sorted(controls) == sorted(["id", "id+lmk", "id+emo", "id+lmk+emo"] * 3)


def test_deterministic_and_batch_independent(planned):
    m, out, plan = planned
    builder = ConditionBuilder(out, m, 48)
    full = builder.build(plan)
    again = ConditionBuilder(out, m, 48).build(plan)
    part = builder.build(plan.slice(5, 3))
    assert torch.equal(full.landmark_images, again.landmark_images)
    assert torch.equal(full.landmark_images[5:8], part.landmark_images)
    assert torch.equal(full.emotions[5:8], part.emotions)


def test_pose_changes_the_landmark_image(planned):
    m, out, plan = planned
    builder = ConditionBuilder(out, m, 64)
    rows = plan.slice(0, 1)
    left = rows.set_column(rows.schema.get_field_index("yaw"), "yaw", pa.array([-30.0], pa.float32()))
    right = rows.set_column(rows.schema.get_field_index("yaw"), "yaw", pa.array([30.0], pa.float32()))
    img_l = builder.build(left).landmark_uint8[0]
    img_r = builder.build(right).landmark_uint8[0]
    assert not np.array_equal(img_l, img_r)
    # the template is near-symmetric, so +30 and -30 are near mirror images of each other
    cols_l = np.flatnonzero(img_l.any(axis=(0, 2)))
    cols_r = np.flatnonzero(img_r.any(axis=(0, 2)))
    assert abs((cols_l[0] + cols_l[-1]) - (63 - cols_r[-1] + 63 - cols_r[0])) <= 4


def test_exemplar_rows_use_bank_landmarks(tmp_path: Path):
    from facegen.conditions.exemplars import write_exemplar_bank
    from facegen.conditions.template import neutral_template

    rng = np.random.default_rng(0)
    n = 8
    lm = neutral_template()[None] + rng.normal(0, 0.01, (n, 478, 3)).astype(np.float32)
    probs = np.eye(8, dtype=np.float32)
    bank = write_exemplar_bank(tmp_path / "bank.parquet", landmarks=lm, emotion=np.arange(8), valence=np.zeros(8),
                               arousal=np.zeros(8), emotion_probs=probs)
    m = _manifest(expression={"exemplars": str(bank)})
    info = write_plan(m, tmp_path / "plan")
    plan = pq.read_table(info.plan_path)
    builder = ConditionBuilder(tmp_path / "plan", m, 64)
    base = builder.base_landmarks(plan.column("exemplar").to_numpy())
    assert np.array_equal(base, lm[plan.column("exemplar").to_numpy()])
    neutral = builder.base_landmarks(np.array([-1]))
    assert np.array_equal(neutral[0], neutral_template())


def test_missing_plan_dir_is_user_error(tmp_path: Path):
    with pytest.raises(FacegenError, match="identities.npy"):
        ConditionBuilder(tmp_path, _manifest(), 64)


@pytest.mark.slow
def test_conditions_feed_the_real_pipeline(planned, tiny_model_dir):
    from facegen.model.pipeline import FaceCrafterPipeline, GuidanceWeights

    m, out, plan = planned
    pipe = FaceCrafterPipeline.from_pretrained(tiny_model_dir, device="cpu")
    rows = plan.slice(0, 4)
    cond = ConditionBuilder(out, m, pipe.landmark_image_size).build(rows)
    result = pipe(
        id_embeds=cond.id_embeds,
        landmark_images=cond.landmark_images,
        emotions=cond.emotions,
        use_lmk=cond.use_lmk,
        use_emo=cond.use_emo,
        seeds=rows.column("seed").to_pylist(),
        num_inference_steps=2,
        guidance=GuidanceWeights(id=m.sampler.guidance.id, lmk=m.sampler.guidance.lmk, emo=m.sampler.guidance.emo),
        scheduler=m.sampler.scheduler,
        output_type="np",
    )
    assert result.images.shape == (4, 64, 64, 3) and result.images.dtype == np.float32
