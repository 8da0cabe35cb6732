"""`facegen extract` end to end on real photos mixed with broken and face-less files."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facegen.cli.main import main


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, astronaut, grace_hopper):
    from skimage import data

    root = tmp_path_factory.mktemp("photos") / "people"
    for name in ("alice", "bob", "misc"):
        (root / name).mkdir(parents=True)
    (root / "alice" / "a1.jpg").write_bytes(_jpeg(astronaut))
    Image.fromarray(astronaut).resize((300, 300)).save(root / "alice" / "a2.png")
    (root / "bob" / "b1.jpg").write_bytes(_jpeg(grace_hopper))
    whole = _jpeg(astronaut)
    (root / "misc" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "misc" / "notes.jpg").write_text("this is not a picture\n")
    (root / "misc" / "rocket.jpg").write_bytes(_jpeg(np.ascontiguousarray(data.rocket())))
    return root


def _extract(photo_folder, out, models_dir, *extra):
    args = [
        "extract", "--input", str(photo_folder), "--out", str(out), "--models", str(models_dir),
        "--emotion-backend", "hsemotion", "--workers", "0", "--no-progress", "--images-per-shard", "4", *extra,
    ]  # fmt: skip
    return main(args)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, photo_folder, models_dir):
    out = tmp_path_factory.mktemp("extract") / "out"
    bank = out.parent / "bank.parquet"
    code = _extract(photo_folder, out, models_dir, "--exemplar-bank", str(bank), "--landmark-images")
    return code, out, bank


def test_good_photos_extracted_and_rest_rejected(extracted):
    code, out, _ = extracted
    assert code == 0
    labels = pq.read_table(out / "labels.parquet").to_pandas()
    assert sorted(labels["source"].map(lambda s: s.rsplit("/", 2)[-2] + "/" + s.rsplit("/", 1)[-1])) == [
        "alice/a1.jpg", "alice/a2.png", "bob/b1.jpg",
    ]  # fmt: skip
    assert list(labels["identity"]) == ["alice", "alice", "bob"]
    assert list(labels["identity_index"]) == [0, 0, 1]
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    by_file = {s.rsplit("/", 1)[-1]: r for s, r in zip(rejects["source"], rejects["reason"])}
    assert by_file == {"truncated.jpg": "truncated", "notes.jpg": "not-an-image", "rocket.jpg": "no-face"}
    assert all(rejects["detail"].str.len() > 0)


def test_extract_rows_follow_the_schema_and_contract(extracted):
    from facegen.labels import EXTRACT_SCHEMA

    _, out, _ = extracted
    table = pq.read_table(out / "labels.parquet")
    assert table.schema.equals(EXTRACT_SCHEMA, check_metadata=False)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    lmk = np.stack(table.column("landmarks").to_numpy(zero_copy_only=False)).reshape(-1, 478, 3)
    assert lmk[..., :2].min() > 0.0 and lmk[..., :2].max() < 1.0  # the face fits inside its crop
    # Crops are in the canonical framing the landmark renderer uses at generation time.
    from facegen.conditions.template import canonical_frame

    np.testing.assert_allclose(canonical_frame(lmk), lmk, atol=1e-4)
    # Same person at two resolutions: nearly the same crop-normalised landmarks and pose.
    assert np.abs(lmk[0, :, :2] - lmk[1, :, :2]).max() < 0.03
    assert abs(table.column("yaw")[0].as_py() - table.column("yaw")[1].as_py()) < 3.0
    probs = np.stack(table.column("emotion_probs").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_extract_shards_are_webdataset(extracted):
    import webdataset as wds

    _, out, _ = extracted
    tars = sorted((out / "shards").glob("*.tar"))
    assert [t.name for t in tars] == ["000000.tar", "000001.tar"]
    # Shard 1 holds only rejects (rocket, truncated): an empty but valid tar.
    samples = [s for t in tars for s in wds.WebDataset(str(t), shardshuffle=False, empty_check=False)]
    assert len(samples) == 3
    for s in samples:
        assert {"jpg", "json", "mask.png", "lmk.png"} <= set(s)
        crop = np.asarray(Image.open(io.BytesIO(s["jpg"])))
        assert crop.shape == (256, 256, 3)
        mask = np.asarray(Image.open(io.BytesIO(s["mask.png"])))
        assert mask.shape == (256, 256) and 0.15 < (mask > 0).mean() < 0.7
        meta = json.loads(s["json"])
        assert set(meta) == {"identity", "identity_index", "yaw", "pitch", "roll", "emotion", "valence", "arousal", "emotion_probs"}
        assert len(meta["emotion_probs"]) == 8


def test_exemplar_bank_loads_in_the_planner(extracted):
    from facegen.conditions.exemplars import load_exemplar_bank

    _, _, bank_path = extracted
    bank = load_exemplar_bank(bank_path)
    assert len(bank) == 3 and bank.landmarks.shape == (3, 478, 3)


def test_extract_rerun_resumes_with_identical_outputs(extracted, photo_folder, models_dir):
    _, out, _ = extracted
    before = {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")}
    labels_before = pq.read_table(out / "labels.parquet")
    stats_before = (out / "shards" / "000000_stats.json").read_bytes()
    assert _extract(photo_folder, out, models_dir, "--exemplar-bank", str(out.parent / "bank.parquet"), "--landmark-images") == 0
    assert (out / "shards" / "000000_stats.json").read_bytes() == stats_before  # resumed, not redone
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")} == before
    assert pq.read_table(out / "labels.parquet").equals(labels_before)


def test_extract_without_arcface_weights_is_one_line_error(tmp_path, photo_folder, capsys):
    code = main(["extract", "--input", str(photo_folder), "--out", str(tmp_path / "o"), "--models", str(tmp_path), "--workers", "0"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: arcface weights not found")
    assert not (tmp_path / "o").exists()


def test_extract_reads_webdataset_shards(tmp_path, astronaut, grace_hopper, models_dir):
    tar_path = tmp_path / "in-000000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for key, img in (("carol/0001", astronaut), ("dave/0001", grace_hopper)):
            data = _jpeg(img)
            info = tarfile.TarInfo(f"{key}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    assert main(["extract", "--input", str(tar_path), "--out", str(out), "--models", str(models_dir), "--emotion-backend", "none", "--workers", "0", "--no-progress"]) == 0
    labels = pq.read_table(out / "labels.parquet").to_pandas()
    assert list(labels["identity"]) == ["carol", "dave"]
    assert labels["emotion"].tolist() == [-1, -1] and labels["valence"].isna().all()


@pytest.mark.slow
def test_extract_on_ray_matches_in_process(ray_local, extracted, photo_folder, models_dir, tmp_path):
    _, out_local, _ = extracted
    out = tmp_path / "ray"
    assert _extract(photo_folder, out, models_dir, "--workers", "1", "--cpus-per-worker", "0.5", "--landmark-images") == 0
    a = pq.read_table(out / "labels.parquet")
    b = pq.read_table(out_local / "labels.parquet")
    assert a.equals(b)


def test_extract_writes_to_an_fsspec_url_like_a_folder(extracted, photo_folder, models_dir, capsys):
    """`--out` takes the same fsspec URLs as `balance --out` (here memory://, in-process)."""
    import uuid

    from facegen.io import Location

    _, out_local, _ = extracted
    url = f"memory://facegen-extract-{uuid.uuid4().hex[:8]}/out"
    assert _extract(photo_folder, url, models_dir, "--landmark-images") == 0, capsys.readouterr().err
    assert f"{url}/rejects.parquet" in capsys.readouterr().out
    root = Location(url)
    try:
        for name in ("labels.parquet", "rejects.parquet", "inputs.parquet"):
            with root.open(name) as f:
                assert pq.read_table(f).equals(pq.read_table(out_local / name)), name
        tars = [n for n in root.list("shards") if n.endswith(".tar")]
        assert tars == sorted(p.name for p in (out_local / "shards").glob("*.tar"))
        for name in tars:
            assert root.read_bytes(f"shards/{name}") == (out_local / "shards" / name).read_bytes()
    finally:
        root.remove_tree("")


def test_the_run_fingerprint_follows_every_backends_weights(tmp_path, monkeypatch):
    """Other weights behind the same backend names are another run (extract re-reads instead of resuming
    from shards labelled by the old weights), the landmark backend's included."""
    import shutil

    import pyarrow as pa

    from facegen.analysis.extract import ExtractConfig, fingerprint
    from facegen.synthface.estimator import shipped_weights_path

    listing = pa.table({"key": ["a", "b"], "source": ["x/a.jpg", "x/b.jpg"], "identity": ["x", "x"]})
    config = ExtractConfig(input=str(tmp_path), out=str(tmp_path / "out"), landmark_backend="synthface",
                           identity_backend="none")
    shipped = fingerprint(config, listing)
    other = tmp_path / "estimator.safetensors"
    shutil.copy(shipped_weights_path(), other)
    monkeypatch.setenv("FACEGEN_SYNTHFACE_ESTIMATOR", str(other))
    assert fingerprint(config, listing) == shipped  # same bytes elsewhere: same run
    with open(other, "r+b") as f:  # one byte of the weights changes
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert fingerprint(config, listing) != shipped
