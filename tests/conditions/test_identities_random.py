"""Random identities: separation for 1,000 identities, determinism; embedding file loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.conditions.identities import load_embeddings, max_pairwise_cosine, random_identities
from facegen.errors import FacegenError


@pytest.fixture(scope="module")
def thousand() -> np.ndarray:
    return random_identities(1000, 0.3, seed=11)


def test_every_pair_below_max_similarity_for_1000(thousand):
    assert thousand.shape == (1000, 512) and thousand.dtype == np.float32
    assert np.allclose(np.linalg.norm(thousand.astype(np.float64), axis=1), 1.0, atol=1e-6)
    e = thousand.astype(np.float64)
    gram = e @ e.T
    iu = np.triu_indices(len(e), k=1)
    assert gram[iu].max() < 0.3
    assert max_pairwise_cosine(thousand) < 0.3


def test_deterministic_and_seed_dependent(thousand):
    assert np.array_equal(random_identities(1000, 0.3, seed=11), thousand)
    assert not np.array_equal(random_identities(1000, 0.3, seed=12), thousand)
    # a prefix does not depend on how many identities are requested after it... within one block
    assert np.array_equal(random_identities(10, 0.3, seed=11), thousand[:10])


def test_strict_threshold_actually_rejects():
    ids = random_identities(300, 0.12, seed=0)  # ~2.7 std: many candidates are rejected
    assert max_pairwise_cosine(ids) < 0.12


def test_infeasible_threshold_is_a_user_error():
    with pytest.raises(FacegenError, match="raise max_similarity or lower count"):
        random_identities(2000, 0.02, seed=0)


def test_npy_loader_normalises(tmp_path: Path):
    raw = np.random.default_rng(0).standard_normal((5, 512)) * 3
    np.save(tmp_path / "e.npy", raw)
    embeds, names = load_embeddings(tmp_path / "e.npy")
    assert embeds.shape == (5, 512) and names[0] == "000000"
    assert np.allclose(embeds, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_parquet_loader_groups_identities_in_first_seen_order(tmp_path: Path):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 512))
    rows = {"identity": ["bob", "alice", "bob"], "embedding": [b.tolist(), a.tolist(), (2 * b).tolist()]}
    pq.write_table(pa.table(rows), tmp_path / "e.parquet")
    embeds, names = load_embeddings(tmp_path / "e.parquet")
    assert names == ["bob", "alice"]
    assert np.allclose(embeds[0], b / np.linalg.norm(b), atol=1e-6)
    assert np.allclose(embeds[1], a / np.linalg.norm(a), atol=1e-6)


@pytest.mark.parametrize(
    "rows, match",
    [
        ({"identity": ["a"], "embedding": [[0.0] * 512]}, "all-zero"),
        ({"identity": ["a"], "embedding": [[1.0] * 511]}, "exactly 512"),
        ({"identity": ["a"], "vec": [[1.0] * 512]}, "lacks column"),
        ({"identity": ["a"], "embedding": [[float("nan")] * 512]}, "NaN"),
    ],
)
def test_parquet_loader_rejects_bad_files(tmp_path: Path, rows, match):
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(FacegenError, match=match):
        load_embeddings(tmp_path / "bad.parquet")


def test_identity_folder_without_arcface_weights_is_one_clear_line(tmp_path: Path, monkeypatch, capsys):
    from PIL import Image

    from facegen.cli.main import main

    monkeypatch.setenv("FACEGEN_MODELS", str(tmp_path / "no_models"))
    (tmp_path / "ids" / "alice").mkdir(parents=True)
    Image.new("RGB", (64, 64), (128, 100, 90)).save(tmp_path / "ids" / "alice" / "a.jpg")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nidentities:\n  folder: ids\nimages_per_identity: 2\n")
    assert main(["plan", "--manifest", str(manifest), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.yaml:3: identities.folder:" in err[0] and "ArcFace" in err[0], err
    assert not (tmp_path / "out" / "plan.parquet").exists()
