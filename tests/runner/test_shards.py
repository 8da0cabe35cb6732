"""Shard writer, resume and interruption on the in-process distributor (no Ray, real webdataset/pyarrow)."""

from __future__ import annotations

import functools
import json
import tarfile

import pandas as pd
import pyarrow as pa
import pytest
import webdataset as wds

from facegen.io import Location, ShardPaths, all_shard_stats
from facegen.io.fs import TEMP_MARK
from facegen.runner import (
    InProcessDistributor,
    Sample,
    ShardTask,
    WorkUnit,
    assign_shards,
    run_shards,
    units_from_parquet,
    units_from_table,
)
from facegen.runner.simulated import SimulatedWorker

N, PER_SHARD = 11, 3  # 4 shards, the last one short


def _table() -> pa.Table:
    return assign_shards(pa.table({"key": [f"s{i:04d}" for i in range(N)], "index": list(range(N))}), PER_SHARD)


def _task(out: str, fingerprint: str = "fp-a", **worker) -> ShardTask:
    return ShardTask(functools.partial(SimulatedWorker, **worker), out, fingerprint)


def test_units_cover_every_row_once(tmp_path):
    table = _table()
    units = units_from_table(table)
    assert [u.shard for u in units] == [0, 1, 2, 3]
    assert [u.num_rows for u in units] == [3, 3, 3, 2]
    path = tmp_path / "rows.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, path, row_group_size=2)  # groups straddle shards: units must still be whole
    streamed = list(units_from_parquet(str(path), skip={1}))
    assert [u.shard for u in streamed] == [0, 2, 3]
    assert [u.rows.column("key").to_pylist() for u in streamed] == [
        u.rows.column("key").to_pylist() for u in units if u.shard != 1
    ]


def test_shards_are_readable_by_stock_tools_and_failures_are_recorded(tmp_path):
    out = str(tmp_path / "ds")
    summary = run_shards(units_from_table(_table()), _task(out, fail_keys={"s0004"}), progress=False)
    assert summary.ok and sorted(summary.done) == [0, 1, 2, 3]
    assert summary.samples == N - 1 and summary.sample_failures == 1
    stats = all_shard_stats(Location(out))
    assert stats[1].failed == [{"key": "s0004", "error": "ValueError: injected failure"}]
    urls = [str(tmp_path / "ds" / ShardPaths(s).tar) for s in range(4)]
    keys = [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]
    assert keys == [f"s{i:04d}" for i in range(N) if i != 4]
    rows = pd.concat([pd.read_parquet(tmp_path / "ds" / ShardPaths(s).parquet) for s in range(4)])
    assert list(rows["key"]) == keys and list(rows["shard"]) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_resume_skips_finished_shards_and_redoes_the_rest(tmp_path):
    out = str(tmp_path / "ds")
    root = Location(out)
    units = units_from_table(_table())
    run_shards(units, _task(out), progress=False)
    before = all_shard_stats(root)
    # Shard 2 "crashed" after its tar was renamed but before its stats: no done-marker, stale tar, temps.
    root.remove(ShardPaths(2).stats)
    (tmp_path / "ds" / "shards" / "000002.tar").write_bytes(b"garbage")
    (tmp_path / "ds" / "shards" / f"000002.tar{TEMP_MARK}abc").write_bytes(b"partial")
    summary = run_shards(units, _task(out), progress=False)
    assert sorted(summary.resumed) == [0, 1, 3]
    assert sorted(summary.done) == [0, 1, 2, 3] and summary.new_samples == 3
    after = all_shard_stats(root)
    assert after[2].tar_sha256 == before[2].tar_sha256  # redone from scratch, same bytes
    assert not [n for n in root.list("shards") if TEMP_MARK in n]
    # Another run identity trusts nothing it finds.
    assert run_shards(units, _task(out, "fp-b"), progress=False).resumed == []


class _InterruptAt:
    """Worker that behaves like Ctrl-C arriving in the middle of shard `shard`."""

    def __init__(self, shard: int) -> None:
        self.shard = shard

    def process(self, unit: WorkUnit):
        for i, row in enumerate(unit.rows.to_pylist()):
            if unit.shard == self.shard and i == 1:
                raise KeyboardInterrupt
            yield Sample(row["key"], {"txt": b"x"}, {})


def test_ctrl_c_keeps_finished_shards_and_removes_temporaries(tmp_path):
    out = str(tmp_path / "ds")
    task = ShardTask(functools.partial(_InterruptAt, 2), out, "fp-a")
    with pytest.raises(KeyboardInterrupt):
        run_shards(units_from_table(_table()), task, InProcessDistributor(), progress=False)
    names = Location(out).list("shards")
    assert sorted(all_shard_stats(Location(out))) == [0, 1]
    assert not [n for n in names if n.startswith("000002") or n.startswith("000003")]
    assert not [n for n in names if TEMP_MARK in n]
    for shard in (0, 1):  # what was kept is whole
        with tarfile.open(tmp_path / "ds" / ShardPaths(shard).tar) as tar:
            assert len(tar.getnames()) == 3


def test_worker_errors_are_retried_then_reported(tmp_path):
    out = str(tmp_path / "ds")
    summary = run_shards(
        units_from_table(_table()), _task(out, fail_shards={1}), InProcessDistributor(max_attempts=2), progress=False
    )
    assert not summary.ok and list(summary.failed) == [1] and "injected error" in summary.failed[1]
    assert sorted(summary.done) == [0, 2, 3]


def test_fsspec_url_output_uses_the_same_code_path():
    out = "memory://facegen-test/ds"
    summary = run_shards(units_from_table(_table()), _task(out), progress=False)
    root = Location(out)
    assert summary.ok and not root.is_local
    stats = json.loads(root.read_bytes(ShardPaths(3).stats))
    assert stats["count"] == 2 and stats["fingerprint"] == "fp-a"
    with root.open(ShardPaths(3).tar) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        assert [m.name for m in tar] == ["s0009.json", "s0009.txt", "s0010.json", "s0010.txt"]
    root.remove_tree("")
