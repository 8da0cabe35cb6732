"""Input caps (facegen/manifest/limits.py): environment defaults, the manifest's `limits:`, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.manifest import load_manifest


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_parquet_identities_counted_in_bounded_memory(tmp_path: Path, monkeypatch, capsys):
    pq.write_table(pa.table({"identity": [f"p{i % 50}" for i in range(200)], "embedding": [[0.1] * 512] * 200}), tmp_path / "e.parquet")
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nidentities:\n  embeddings: e.parquet\nimages_per_identity: 2\n")
    monkeypatch.setenv("FACEGEN_MAX_IDENTITIES", "20")
    assert main(["manifest", "validate", str(path)]) == 2
    assert ":3: identities.embeddings: more than 20 identities" in _one_error(capsys)
    monkeypatch.setenv("FACEGEN_MAX_IDENTITIES", "60")  # 200 rows, 50 identities: fine
    assert main(["manifest", "validate", str(path)]) == 0


def test_balance_total_cap(tmp_path: Path, monkeypatch, capsys):
    pq.write_table(pa.table({"emotion": ["Happy", "Neutral"]}), tmp_path / "labels.parquet")
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nidentities: {random: {count: 2}}\nbalance: {source: labels.parquet, total: 5000}\n")
    monkeypatch.setenv("FACEGEN_MAX_IMAGES", "1000")
    assert main(["manifest", "validate", str(path)]) == 2
    assert f"{path}:3: balance.total: 5,000 images, above the limit of 1,000" in _one_error(capsys)


def test_limits_stay_out_of_the_fingerprint(tmp_path: Path):
    base = "version: 1\nidentities: {random: {count: 2}}\nimages_per_identity: 3\n"
    (tmp_path / "a.yaml").write_text(base)
    (tmp_path / "b.yaml").write_text(base + "limits: {max_images: 10, max_identities: 5}\n")
    a, b = load_manifest(tmp_path / "a.yaml"), load_manifest(tmp_path / "b.yaml")
    assert b.limits.max_images == 10
    assert a.model_dump(mode="json") == b.model_dump(mode="json") and "limits" not in a.model_dump()


def test_manifest_size_limit_from_the_environment(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nidentities: {random: {count: 2}}\nimages_per_identity: 3\n" + "# padding\n" * 100)
    monkeypatch.setenv("FACEGEN_MAX_MANIFEST_BYTES", "200")
    with pytest.raises(FacegenError, match="above the 200 bytes limit"):
        load_manifest(path)
    monkeypatch.setenv("FACEGEN_MAX_MANIFEST_BYTES", "1_000_000")
    assert load_manifest(path).images_per_identity == 3


def test_alias_error_points_at_the_alias_value(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nx: &x [1, 2, 3, 4]\ny: &y [*x, *x, *x]\nz: [*y, *y]\n")
    monkeypatch.setenv("FACEGEN_MAX_MANIFEST_VALUES", "20")
    with pytest.raises(FacegenError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}:4: ")  # z expands to 2 x 16 + 1 values
