"""The one atomic writer (`Location.open_atomic` and the helpers on it), local and on an fsspec URL."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.io.fs import TEMP_MARK, Location, normalize_url, split_url, write_bytes_atomic, write_parquet_atomic


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path):
    url = str(tmp_path / "d") if request.param == "local" else f"memory://facegen-atomic-{uuid.uuid4().hex[:8]}/d"
    loc = Location(url)
    loc.makedirs()
    yield loc
    if not loc.is_local:
        loc.remove_tree("")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(root):
    root.write_bytes_atomic("x.bin", b"old")
    with pytest.raises(RuntimeError):
        with root.open_atomic("x.bin") as f:
            f.write(b"half of the new")
            assert root.read_bytes("x.bin") == b"old"  # nothing visible before the block ends
            raise RuntimeError("crash mid-write")
    assert root.read_bytes("x.bin") == b"old"
    assert root.list() == ["x.bin"]
    with root.open_atomic("x.bin") as f:
        f.write(b"new")
    assert root.read_bytes("x.bin") == b"new" and root.list() == ["x.bin"]


def test_parquet_written_atomically_reads_back(root):
    table = pa.table({"a": np.arange(5), "b": list("abcde")})
    root.write_parquet_atomic("t.parquet", table)
    with root.open("t.parquet", "rb") as f:
        assert pq.read_table(f).equals(table)
    with pytest.raises(pa.ArrowException):
        root.write_parquet_atomic("t.parquet", pa.table({"a": [1]}), compression="not-a-codec")  # pyarrow refuses
    with root.open("t.parquet", "rb") as f:
        assert pq.read_table(f).equals(table)  # untouched
    assert not [n for n in root.list() if TEMP_MARK in n]


def test_path_helpers_split_urls_and_local_paths(tmp_path, monkeypatch):
    loc, name = split_url("memory://bucket/ds/x.parquet")
    assert (loc.url, name) == ("memory://bucket/ds", "x.parquet")
    monkeypatch.chdir(tmp_path)
    loc, name = split_url("sub/y.json")
    assert (loc.url, name) == (str(tmp_path / "sub"), "y.json")
    assert normalize_url("rel") == str(tmp_path / "rel") and normalize_url("s3://b/ds/") == "s3://b/ds"
    (tmp_path / "sub").mkdir()
    write_bytes_atomic("sub/y.json", b"{}")
    write_parquet_atomic(tmp_path / "sub" / "z.parquet", pa.table({"k": [1]}))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["y.json", "z.parquet"]


def test_the_exemplar_bank_writer_is_atomic(tmp_path):
    """write_exemplar_bank goes through the shared writer: the bank reads back, no temporary is left."""
    from facegen.conditions.exemplars import load_exemplar_bank, write_exemplar_bank
    from facegen.conditions.template import neutral_template

    lm = np.broadcast_to(neutral_template(), (2, 478, 3)).astype(np.float32)
    probs = np.full((2, 8), 1 / 8, np.float32)
    path = write_exemplar_bank(tmp_path / "bank.parquet", landmarks=lm, emotion=[0, 1], valence=[0, 0], arousal=[0, 0], emotion_probs=probs)
    assert len(load_exemplar_bank(path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.parquet"]


def test_names_are_streamed_like_the_listing_and_a_missing_folder_has_none(root):
    root.makedirs("s")
    for name in ("b.tar", "a_stats.json", "c.parquet"):
        root.write_bytes_atomic(f"s/{name}", b"x")
    names = root.iter_names("s")
    assert not isinstance(names, list)  # a generator: a million shards' names are never one list here
    assert sorted(names) == root.list("s") == ["a_stats.json", "b.tar", "c.parquet"]
    assert list(root.iter_names("missing")) == [] == root.list("missing")
