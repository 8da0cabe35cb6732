"""The Ray actor pool with simulated workers: crashes are retried, persistent errors are bounded."""

from __future__ import annotations

import functools

import pyarrow as pa
import pytest

from facegen.io import Location, all_shard_stats
from facegen.runner import RayDistributor, ShardTask, assign_shards, run_shards, units_from_table
from facegen.runner.simulated import SimulatedWorker

pytestmark = pytest.mark.slow


def _units(n: int = 12, per_shard: int = 2):
    table = assign_shards(pa.table({"key": [f"k{i:03d}" for i in range(n)], "index": list(range(n))}), per_shard)
    return units_from_table(table)


def test_dead_actors_lose_only_their_shard(ray_local, tmp_path):
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    worker = functools.partial(SimulatedWorker, 0.05, crash_shards={0, 3}, crash_dir=str(crash_dir))
    out = str(tmp_path / "ds")
    summary = run_shards(_units(), ShardTask(worker, out, "fp"), RayDistributor(2, num_cpus=0.5), progress=False)
    assert sorted(p.name for p in crash_dir.iterdir()) == ["crash-0", "crash-3"]  # both actors really died
    assert summary.ok and summary.retried == {0: 2, 3: 2}
    stats = all_shard_stats(Location(out))
    assert sorted(stats) == list(range(6)) and sum(s.count for s in stats.values()) == 12
    assert not [n for n in Location(out).list("shards") if ".tmp-" in n]


def test_a_shard_that_always_fails_is_reported_after_bounded_retries(ray_local, tmp_path):
    worker = functools.partial(SimulatedWorker, 0.0, fail_shards={2})
    out = str(tmp_path / "ds")
    summary = run_shards(_units(), ShardTask(worker, out, "fp"), RayDistributor(2, num_cpus=0.5, max_attempts=2), progress=False)
    assert list(summary.failed) == [2] and "injected error in shard 2" in summary.failed[2]
    assert summary.retried[2] == 2
    assert sorted(summary.done) == [0, 1, 3, 4, 5]
