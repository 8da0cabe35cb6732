"""The users of the one shard reader read an fsspec URL exactly like a folder: preview, export, inspect
and the training images (`TarImages`), on a copy of the small generated dataset in ``memory://``."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from facegen.io import Location, write_shard
from facegen.io.samples import Sample


def test_training_images_read_through_the_shared_reader_from_a_url(small_dataset):
    """`TarImages` (facegen/train/data.py) on an fsspec URL: only possible through the shared reader."""
    from facegen.train.data import TarImages

    url = _copy_to_memory(small_dataset)
    # the small dataset stores webp; make one jpg shard the way extract does
    root = Location(url)
    write_shard(root, 9, [Sample("x00000001", {"jpg": _jpeg(), "json": b"{}"})], fingerprint="fp")
    images = TarImages(url)
    assert "x00000001" in images and "000000000" not in images  # webp samples are not training images
    assert images.read("x00000001").size == (16, 16)
    root.remove_tree("")


def test_preview_export_and_inspect_read_urls_like_folders(small_dataset, tmp_path):
    from facegen.data import export_imagefolder, inspect_dataset
    from facegen.report.preview import render_preview

    url = _copy_to_memory(small_dataset)
    labels = pq.read_table(small_dataset / "labels.parquet")
    assert render_preview(Location(url), labels) == render_preview(Location(str(small_dataset)), labels)
    report = inspect_dataset(url)
    assert report.ok, report.problems
    assert report.tar_samples == labels.num_rows
    a, b = tmp_path / "a", tmp_path / "b"
    assert export_imagefolder(url, a) == export_imagefolder(str(small_dataset), b) == labels.num_rows
    assert sorted(p.relative_to(a) for p in a.rglob("*.jpg")) == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    Location(url).remove_tree("")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _copy_to_memory(folder: Path) -> str:
    url = f"memory://facegen-copy-{uuid.uuid4().hex[:8]}/ds"
    root = Location(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if "/" in rel:
                root.makedirs(rel.rsplit("/", 1)[0])
            with root.open(rel, "wb") as f:
                f.write(path.read_bytes())
    return url
