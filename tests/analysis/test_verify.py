"""`facegen verify` on a dataset in the real `balance` output format whose "generated" images are real photos."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facegen.analysis.verify import landmark_nme, pair_similarities
from facegen.cli.main import main


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def balance_dir(tmp_path_factory, astronaut, grace_hopper):
    from facegen.io.fs import Location
    from facegen.io.samples import Sample
    from facegen.io.shards import write_shard
    from facegen.labels import GENERATED_SCHEMA
    from facegen.runner.verification import unmeasured_columns

    root = tmp_path_factory.mktemp("balance") / "ds"
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    images = [
        (0, astronaut, 0.0),
        (0, np.asarray(Image.fromarray(astronaut).resize((400, 400))), 0.0),
        (0, np.ascontiguousarray(astronaut[:, ::-1]), 40.0),  # planned yaw far from the photo's -> pose reject
        (1, np.asarray(Image.fromarray(grace_hopper).resize((384, 450))), 0.0),
        (1, grace_hopper, 0.0),
        (1, noise, 0.0),  # no face
    ]
    rows = []
    for i, (ident, img, yaw) in enumerate(images):
        emotion = i % 3
        probs = np.full(8, 0.02, np.float32)
        probs[emotion] = 0.86
        rows.append(
            dict(
                key=f"{i:06d}", index=i, shard=i // 3, identity=ident, seed=i, target_emotion=emotion,
                target_emotion_name=["neutral", "happy", "sad"][emotion], target_valence=0.1 * i - 0.2,
                target_arousal=0.05 * i, target_emotion_probs=probs.tolist(), target_yaw=yaw, target_pitch=0.0,
                target_roll=0.0, exemplar=-1, controls="id+lmk+emo", round=0,
                image_format="png", width=img.shape[1], height=img.shape[0], steps=2, scheduler="ddim",
                guidance_id=2.5, guidance_lmk=2.0, guidance_emo=2.0, model_id="photos",
                **unmeasured_columns(),  # written without in-loop verification
            )
        )  # fmt: skip
    loc = Location(str(root))
    for shard in (0, 1):
        part = [(r, images[r["index"]][1]) for r in rows if r["shard"] == shard]
        samples = [Sample(r["key"], {"png": _png(img), "json": b"{}"}, r) for r, img in part]
        write_shard(loc, shard, samples, fingerprint="test", label_schema=GENERATED_SCHEMA)
    pq.write_table(pa.Table.from_pylist(rows, schema=GENERATED_SCHEMA), root / "labels.parquet")
    ids = np.random.default_rng(1).normal(size=(2, 512)).astype(np.float32)
    np.save(root / "identities.npy", ids / np.linalg.norm(ids, axis=1, keepdims=True))
    return root, images


@pytest.fixture(scope="module")
def verified(balance_dir, models_dir):
    root, images = balance_dir
    code = main(["verify", str(root), "--identity-backend", "dlib", "--emotion-backend", "hsemotion", "--models", str(models_dir), "--reject", "--workers", "0", "--no-progress"])
    return code, root, images


def test_verify_measures_next_to_planned(verified, mesh):
    from facegen.analysis import head_pose

    code, root, images = verified
    assert code == 0
    t = pq.read_table(root / "verify.parquet").to_pandas()
    assert len(t) == 6 and {"target_yaw", "measured_yaw", "pose_error", "landmark_nme", "identity_similarity", "rejected"} <= set(t.columns)
    assert t["face_found"].tolist() == [True, True, True, True, True, False]
    for i, (_, img, _) in enumerate(images[:5]):
        pose = head_pose(mesh.detect(img))  # measured independently on the same pixels
        assert t["measured_yaw"][i] == pytest.approx(pose.yaw, abs=1e-3)
        assert t["measured_roll"][i] == pytest.approx(pose.roll, abs=1e-3)
    assert t["rejected"].tolist() == [False, False, True, False, False, True]
    assert t["reject_reason"].tolist() == ["", "", "pose", "", "", "no-face"]


def test_verify_report(verified):
    _, root, _ = verified
    report = json.loads((root / "verify_report.json").read_text())
    t = pq.read_table(root / "verify.parquet").to_pandas()
    found = t["face_found"].to_numpy()
    expected_yaw = np.sqrt(np.mean((t["measured_yaw"][found] - t["target_yaw"][found]) ** 2))
    assert report["pose_rmse_deg"]["yaw"] == pytest.approx(expected_yaw, rel=1e-4)
    assert report["pose_rmse_deg"]["yaw"] > 10  # the row planned at yaw 40 dominates
    emo = found & (t["measured_emotion"] >= 0).to_numpy()
    assert report["emotion"]["accuracy"] == pytest.approx((t["measured_emotion"][emo] == t["target_emotion"][emo]).mean())
    ident = report["identity"]
    assert ident["same_identity_pairs"]["n"] == 3 + 1  # astronaut: 3 pairs, Hopper: 1 pair (noise had no face)
    assert ident["same_identity_pairs"]["p05"] > ident["impostor_pairs"]["p95"]
    assert np.isfinite(t["landmark_nme"][found]).all() and np.isnan(t["landmark_nme"][~found]).all()


def test_verify_with_arcface_compares_to_planned_identity(balance_dir, models_dir, tmp_path):
    import shutil

    root, _ = balance_dir
    copy = tmp_path / "ds"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("verify*"))
    assert main(["verify", str(copy), "--identity-backend", "arcface", "--emotion-backend", "none", "--models", str(models_dir), "--workers", "0", "--no-progress"]) == 0
    t = pq.read_table(copy / "verify.parquet").to_pandas()
    emb = np.stack(t["identity_embedding"][:5])
    assert emb.shape == (5, 512)
    ref = np.load(copy / "identities.npy")[t["identity"][:5].to_numpy()]
    np.testing.assert_allclose(t["identity_similarity"][:5], (emb * ref).sum(1), atol=1e-5)
    assert not t["rejected"].any()  # no --reject: nothing marked
    assert "emotion" not in json.loads((copy / "verify_report.json").read_text())


def test_landmark_nme_units():
    from facegen.conditions.template import neutral_template

    t = np.asarray(neutral_template(), np.float64)[None]
    assert landmark_nme(t, t)[0] == 0.0
    iod = np.linalg.norm(t[0, 33, :2] - t[0, 263, :2])
    shifted = t + np.array([0.01, 0.0, 0.0])
    assert landmark_nme(shifted, t)[0] == pytest.approx(0.01 / iod)


def test_pair_similarities_split_same_and_impostor():
    e = np.eye(4)[[0, 0, 1, 1]]
    same, impostor = pair_similarities(e, np.array([0, 0, 1, 1]))
    assert same.tolist() == [1.0, 1.0]
    assert impostor.size > 0 and (impostor == 0.0).all()


def test_verify_rejects_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    assert main(["verify", str(tmp_path), "--workers", "0"]) == 2
    assert "labels.parquet" in capsys.readouterr().err


def test_verify_reads_and_writes_an_fsspec_url_like_a_folder(verified, models_dir, capsys):
    """DATASET takes the same fsspec URLs as `balance --out` (memory://, in-process): same table, same report."""
    import uuid

    from facegen.io import Location

    _, root, _ = verified
    url = f"memory://facegen-verify-{uuid.uuid4().hex[:8]}/ds"
    remote = Location(url)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith("verify"):
            remote.makedirs(rel.rpartition("/")[0])
            with remote.open(rel, "wb") as f:
                f.write(path.read_bytes())
    try:
        code = main(["verify", url, "--identity-backend", "dlib", "--emotion-backend", "hsemotion", "--models", str(models_dir), "--reject", "--workers", "0", "--no-progress"])
        assert code == 0, capsys.readouterr().err
        assert f"{url}/verify.parquet" in capsys.readouterr().out
        import pandas as pd

        with remote.open("verify.parquet") as f:
            pd.testing.assert_frame_equal(pq.read_table(f).to_pandas(), pq.read_table(root / "verify.parquet").to_pandas())
        ours = json.loads(remote.read_bytes("verify_report.json"))
        local = json.loads((root / "verify_report.json").read_text())
        ours.pop("seconds"), local.pop("seconds")
        assert json.dumps(ours, sort_keys=True) == json.dumps(local, sort_keys=True)
        assert [n for n in remote.list("verify/shards") if n.endswith(".tar")] == ["000000.tar", "000001.tar"]
    finally:
        remote.remove_tree("")
