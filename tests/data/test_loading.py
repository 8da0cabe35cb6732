"""facegen.data: torch loaders (multi-worker, no duplicates), targets, ImageFolder export, inspect."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from facegen.data import export_imagefolder, inspect_dataset, make_dataset, make_loader

REPO = Path(__file__).resolve().parents[2]


def test_two_dataloader_workers_see_every_sample_once(small_dataset):
    labels = pd.read_parquet(small_dataset / "labels.parquet")
    loader = make_loader(str(small_dataset), batch_size=2, num_workers=2, target="labels")
    keys = []
    for images, metas in loader:
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
        keys.extend(meta["key"] for meta in metas)  # labels batches are lists of dicts
    assert len(keys) == len(set(keys)) == len(labels) == 12
    assert set(keys) == set(labels["key"])


@pytest.mark.parametrize("target", ["identity", "emotion", "va"])
def test_targets_match_labels(small_dataset, target):
    labels = pd.read_parquet(small_dataset / "labels.parquet").set_index("key")
    pairs = list(make_dataset(str(small_dataset), target="labels"))
    plain = list(make_dataset(str(small_dataset), target=target, image_size=16))
    assert len(plain) == len(pairs) == 12
    for (image, got), (_, meta) in zip(plain, pairs):
        assert image.shape == (3, 16, 16)
        row = labels.loc[meta["key"]]
        if target == "va":  # generated labels name planned values target_* (facegen.labels.TARGET_RENAMES)
            assert torch.allclose(got, torch.tensor([row["target_valence"], row["target_arousal"]], dtype=torch.float32))
        else:
            assert got == int(row[{"emotion": "target_emotion"}.get(target, target)])


def test_export_imagefolder_layout(small_dataset, tmp_path):
    out = tmp_path / "folder"
    assert export_imagefolder(str(small_dataset), out) == 12
    labels = pd.read_parquet(small_dataset / "labels.parquet")
    for key, identity in zip(labels["key"], labels["identity"]):
        image = Image.open(out / f"{identity:06d}" / f"{key}.jpg")
        assert image.format == "JPEG" and image.size == (32, 32)
    assert sorted(p.name for p in out.iterdir()) == ["000000", "000001", "000002"]


def test_inspect_fails_on_a_truncated_tar_and_a_missing_stats_file(small_dataset, tmp_path):
    assert inspect_dataset(str(small_dataset)).ok
    broken = tmp_path / "broken"
    shutil.copytree(small_dataset, broken)
    tar = broken / "shards" / "000001.tar"
    tar.write_bytes(tar.read_bytes()[:700])
    (broken / "shards" / "000002_stats.json").unlink()
    report = inspect_dataset(str(broken))
    assert not report.ok
    text = "\n".join(report.problems)
    assert "000001: tar unreadable" in text and "000002: no stats file" in text
    proc = subprocess.run([sys.executable, "-m", "facegen.cli.main", "inspect", str(broken)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "integrity: FAILED" in proc.stdout
