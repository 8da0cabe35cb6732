"""The one shard reader (`facegen.io.reader.ShardReader`) against stock webdataset, on local disk and on an
fsspec URL. Its users (preview, export, inspect, training images, verify): tests/data/test_shard_reader_users.py
and tests/analysis/test_verify.py."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from facegen.io import Location, ShardPaths, ShardReader, shard_tars, write_shard
from facegen.io.samples import Sample, SampleFailure


def _png(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _samples() -> list[Sample | SampleFailure]:
    out: list[Sample | SampleFailure] = []
    for i in range(5):
        files = {"png": _png(i), "json": f'{{"i": {i}}}'.encode(), "cls": str(i % 2).encode()}
        if i % 2:
            files["lmk.png"] = _png(100 + i, 4)
        out.append(Sample(f"{i:06d}", files, {"i": i}))
    out.insert(2, SampleFailure("000099", "boom"))
    return out


@pytest.fixture(params=["local", "memory"])
def shard_root(request, tmp_path) -> Location:
    url = str(tmp_path / "ds") if request.param == "local" else f"memory://facegen-reader-{uuid.uuid4().hex[:8]}/ds"
    root = Location(url)
    write_shard(root, 0, _samples(), fingerprint="fp")
    write_shard(root, 1, [Sample("000007", {"jpg": b"\xff\xd8not-really", "json": b"{}"})], fingerprint="fp")
    yield root
    if not root.is_local:
        root.remove_tree("")


def _stock(root: Location, shard: int, scratch: Path) -> list[tuple[str, dict[str, bytes]]]:
    """The same tar through stock webdataset (no decoding): the independent reference."""
    local = scratch / f"stock-{shard:06d}.tar"
    local.write_bytes(root.read_bytes(ShardPaths(shard).tar))
    out = []
    for sample in wds.WebDataset([str(local)], shardshuffle=False, empty_check=False):
        files = {k: v for k, v in sample.items() if not k.startswith("__")}
        out.append((sample["__key__"], files))
    return out


def test_samples_match_stock_webdataset(shard_root, tmp_path):
    ours = list(ShardReader.of(shard_root, 0).samples())
    assert ours == _stock(shard_root, 0, tmp_path)
    assert [k for k, _ in ours] == [f"{i:06d}" for i in range(5)]
    assert set(ours[1][1]) == {"png", "json", "cls", "lmk.png"} and set(ours[0][1]) == {"png", "json", "cls"}


def test_samples_filter_keys_and_extensions(shard_root):
    reader = ShardReader.of(shard_root, 0)
    got = list(reader.samples(keys={"000001", "000004", "nope"}, exts=("png", "webp")))
    assert [k for k, _ in got] == ["000001", "000004"]
    assert all(set(files) == {"png"} for _, files in got)
    assert got[0][1]["png"] == _png(1)
    assert list(reader.samples(exts=("webp",))) == []


def test_scan_hashes_the_file_stats_recorded(shard_root):
    from facegen.io import read_shard_stats

    scan = ShardReader.of(shard_root, 0).scan()
    stats = read_shard_stats(shard_root, 0)
    assert scan.sha256 == stats.tar_sha256 == hashlib.sha256(shard_root.read_bytes(ShardPaths(0).tar)).hexdigest()
    assert scan.bytes == stats.tar_bytes
    assert scan.keys == [f"{i:06d}" for i in range(5)]
    assert scan.exts["000003"] == {"png", "json", "cls", "lmk.png"}


def test_random_access_reads_the_member_bytes(shard_root):
    reader = ShardReader.of(shard_root, 0)
    assert "000003" in reader and "000099" not in reader  # failures never reach the tar
    assert reader.read("000003", "lmk.png") == _png(103, 4)
    with reader:  # one open file for many reads
        assert [reader.read(f"{i:06d}", "json") for i in range(5)] == [f'{{"i": {i}}}'.encode() for i in range(5)]
    with pytest.raises(KeyError):
        reader.read("000000", "lmk.png")
    assert shard_tars(shard_root) == ["shards/000000.tar", "shards/000001.tar"]


def test_a_damaged_tar_is_an_error_not_a_short_read(tmp_path):
    root = Location(str(tmp_path / "ds"))
    write_shard(root, 0, _samples(), fingerprint="fp")
    path = Path(root.path(ShardPaths(0).tar))
    offset, size = ShardReader.of(root, 0).index()["000002"]["png"]
    path.write_bytes(path.read_bytes()[: offset + size // 2])  # cut inside a member's data
    with pytest.raises((tarfile.TarError, OSError, EOFError)):
        ShardReader.of(root, 0).scan()
    with pytest.raises((tarfile.TarError, OSError, EOFError)):
        list(ShardReader.of(root, 0).samples())
