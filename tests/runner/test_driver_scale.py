"""The driver at scale (issue 13): compact result ledger, units that pickle only their rows, a resume
listing that opens no marker, warm spares, and a small run of ``benchmarks/driver_scale.py``."""

from __future__ import annotations

import functools
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from facegen.io import Location, ShardPaths, all_shard_stats
from facegen.io.fs import TEMP_MARK
from facegen.io.shards import marked_shards
from facegen.runner import RayDistributor, ShardTask, WorkUnit, assign_shards, run_shards, units_from_table
from facegen.runner.aggregate import ShardDone, ShardLedger
from facegen.runner.run import verified_finished
from facegen.runner.simulated import SimulatedWorker

ROOT = Path(__file__).resolve().parents[2]

#: Paths opened by this process while `_watch` is on (a real audit hook: every open() goes through it).
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _opened.append(args[0].decode() if isinstance(args[0], bytes) else args[0])


sys.addaudithook(_audit)


def _table(n: int, per_shard: int) -> pa.Table:
    return assign_shards(pa.table({"key": [f"k{i:05d}" for i in range(n)], "index": list(range(n))}), per_shard)


def _write(out: str, n: int = 12, per_shard: int = 2) -> ShardTask:
    task = ShardTask(functools.partial(SimulatedWorker, 0.0), out, "fp")
    assert run_shards(units_from_table(_table(n, per_shard)), task, progress=False).ok
    return task


def test_ledger_is_a_mapping_of_compact_results_with_running_totals():
    ledger = ShardLedger()
    done = {3: ShardDone(3, 10, 1, 2.0, 5.0, ({"key": "a", "error": "e"},)), 0: ShardDone(0, 7, 0, 1.0, 4.0),
            5_000_000: ShardDone(5_000_000, 2, 0, 0.5, 1.0)}  # far out: kept apart, not as a dense array
    for shard, item in done.items():
        ledger[shard] = item
    ledger[0] = ShardDone(0, 8, 0, 1.5, 4.5)  # a redone shard replaces its entry
    done[0] = ledger[0]
    assert list(ledger) == [0, 3, 5_000_000] and len(ledger) == 3
    assert dict(ledger.items()) == done
    assert (ledger.samples, ledger.sample_failures, ledger.seconds) == (20, 1, 4.0)
    assert list(ledger.failed_items()) == [(3, ({"key": "a", "error": "e"},))]
    assert 1 not in ledger and 4 not in ledger and -1 not in ledger
    with pytest.raises(KeyError):
        ledger[1]
    del ledger[3]
    assert list(ledger) == [0, 5_000_000] and ledger.samples == 10 and not list(ledger.failed_items())


def test_a_unit_pickles_only_its_own_rows():
    group = _table(100_000, 1)  # a plan row group of many one-row shards
    unit = WorkUnit(777, group.slice(777, 1))
    data = pickle.dumps(unit)
    assert len(data) < 4096, len(data)  # the whole group's buffers were ~2 MB
    back = pickle.loads(data)
    assert back.shard == 777 and back.rows.equals(unit.rows)


def test_resume_listing_opens_no_marker(tmp_path):
    global _opened
    out = str(tmp_path / "ds")
    _write(out)
    root = Location(out)
    root.write_bytes_atomic(ShardPaths(4).stats, b"not json at all")  # listed all the same: it is never read here
    _opened = []
    try:
        listed = marked_shards(root)
    finally:
        opened, _opened = _opened, None
    assert listed == [0, 1, 2, 3, 4, 5]
    assert not [p for p in opened if p.endswith("_stats.json")], opened


@pytest.mark.slow
def test_ray_resume_checks_markers_on_the_actors_not_in_the_driver(ray_local, tmp_path):
    global _opened
    out = str(tmp_path / "ds")
    task = _write(out)
    root = Location(out)
    with open(root.path(ShardPaths(2).tar), "r+b") as f:  # a byte flipped after writing
        f.seek(600)
        byte = f.read(1)
        f.seek(600)
        f.write(bytes([byte[0] ^ 0xFF]))
    pool = RayDistributor(2, num_cpus=0.25)
    pool.start(task)
    _opened = []
    try:
        finished, damaged = verified_finished(root, task.fingerprint, pool, task)
    finally:
        opened, _opened = _opened, None
        pool.close()
    assert sorted(finished) == [0, 1, 3, 4, 5] and list(damaged) == [2] and "sha256" in damaged[2]
    assert finished[3].count == 2 and finished.samples == 10
    assert not root.exists(ShardPaths(2).stats)  # the damaged shard is deleted, to be redone
    shard_files = [p for p in opened if "/shards/" in p]
    assert not shard_files, shard_files  # the driver neither read a marker nor hashed a file


@pytest.mark.slow
def test_a_warm_spare_replaces_a_crashed_actor_without_losing_or_duplicating_a_shard(ray_local, tmp_path):
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    n, per_shard = 24, 2
    worker = functools.partial(SimulatedWorker, 0.1, crash_shards={1, 6}, crash_dir=str(crash_dir), crash_at=0.5)
    out = str(tmp_path / "ds")
    task = ShardTask(worker, out, "fp")
    pool = RayDistributor(2, num_cpus=0.2, spare_actors=1, max_replacements=2)
    pool.start(task)  # 2 working actors + 1 warm spare, all ready
    import ray

    (spare,) = pool._spares
    _, spare_pid = ray.get(spare.ready.remote())
    summary = run_shards(units_from_table(_table(n, per_shard)), task, pool, progress=False)
    assert sorted(p.name for p in crash_dir.iterdir()) == ["crash-1", "crash-6"]  # two actors really died
    assert summary.ok and summary.retried == {1: 2, 6: 2}
    assert sorted(summary.done) == list(range(n // per_shard)) and summary.samples == n and not summary.resumed
    stats = all_shard_stats(Location(out))
    assert sorted(stats) == list(range(n // per_shard))
    assert sum(s.count for s in stats.values()) == n  # every sample once
    assert spare_pid in {s.pid for s in stats.values()}  # the spare took over a dead actor's place
    assert not [p for p in Location(out).list("shards") if TEMP_MARK in p]


@pytest.mark.slow
def test_a_spare_takes_no_work_while_every_actor_lives(ray_local, tmp_path):
    out = str(tmp_path / "ds")
    task = ShardTask(functools.partial(SimulatedWorker, 0.02), out, "fp")
    pool = RayDistributor(1, num_cpus=0.2, spare_actors=1)
    pool.start(task)
    import ray

    (spare,) = pool._spares
    _, spare_pid = ray.get(spare.ready.remote())
    summary = run_shards(units_from_table(_table(8, 2)), task, pool, progress=False)
    assert summary.ok and summary.samples == 8
    assert spare_pid not in {s.pid for s in all_shard_stats(Location(out)).values()}


@pytest.mark.slow
def test_driver_scale_benchmark_runs_small(tmp_path):
    out = tmp_path / "results.json"
    # a few seconds on an idle machine (2k zero-cost shards, 4 simulated actors); generous timeout for a busy one
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "driver_scale.py"), "--shards", "2000", "--actors", "2",
         "--sim-actors", "4", "--sim-shards", "40", "--sim-seconds", "0.05", "--sim-baseline-shards", "8",
         "--spares", "1", "--work", str(tmp_path), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for column in ("shards", "driver CPU s", "CPU ms/shard", "peak RSS MiB", "wall s", "RSS MiB after each phase"):
        assert column in proc.stdout
    assert "4 actors:" in proc.stdout and "x one actor after start-up (eff " in proc.stdout
    results = json.loads(out.read_text())
    (row,) = results["scale"]
    assert row["shards"] == 2000 and row["driver_cpu"] > 0 and row["peak_mib"] > 0
    assert row["run_finalize_peak_mib"] >= row["run_peak_mib"] >= row["plan_peak_mib"] > 0
    sim = results["simulated"]
    assert sim["crashed"] == 4 and sim["speedup"] > 0  # 10% of 40 shards crashed their actor once


# -- finalize streams labels.parquet; short units go several per Ray call -------------------------------


def _labelled(out: str, index: list[int], per_shard: int) -> tuple[ShardTask, Any]:
    """Shards whose label rows are their plan rows (key, `index`, round 0, shard), `per_shard` rows each."""
    n = len(index)
    table = assign_shards(pa.table({"key": [f"{i:09d}" for i in range(n)], "index": index,
                                    "round": pa.array([0] * n, pa.int16())}), per_shard)
    task = ShardTask(functools.partial(SimulatedWorker, 0.0, label_rows=True), out, "fp")
    summary = run_shards(units_from_table(table), task, progress=False)
    assert summary.ok
    return task, summary


def test_labels_are_streamed_in_plan_order_in_row_groups_of_the_chunk(tmp_path):
    import pyarrow.parquet as pq

    from facegen.runner.finalize import LABELS_NAME, _in_plan_order, collect_labels, write_labels

    out = str(tmp_path / "ds")
    _, summary = _labelled(out, list(range(40)), 3)
    root = Location(out)
    assert write_labels(root, summary.done, chunk_rows=7) == 40
    written = pq.ParquetFile(root.path(LABELS_NAME))
    # streamed: a row group per ~7 rows of whole shards (9, 9, 9, 9, 4), never one table of everything
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [9, 9, 9, 9, 4]
    assert written.read().equals(_in_plan_order(collect_labels(root, list(summary.done))))
    assert written.read().column("index").to_pylist() == list(range(40))


def test_labels_out_of_plan_order_in_shard_order_are_sorted_as_before(tmp_path):
    import pyarrow.parquet as pq

    from facegen.runner.finalize import LABELS_NAME, write_labels

    out = str(tmp_path / "ds")
    index = [10, 11, 12, 0, 1, 2, 13, 14, 3, 4]  # like a regeneration round: later shards hold earlier plan rows
    _, summary = _labelled(out, index, 2)
    root = Location(out)
    assert write_labels(root, summary.done, chunk_rows=3) == 10
    labels = pq.read_table(root.path(LABELS_NAME))
    assert labels.column("index").to_pylist() == sorted(index)
    assert labels.column("key").to_pylist() == [f"{index.index(i):09d}" for i in sorted(index)]


def test_the_ledger_lists_rejected_shards_from_its_arrays():
    ledger = ShardLedger()
    for shard, rejected in ((0, 0), (1, 2), (2, 0), (7, 1)):
        ledger[shard] = ShardDone(shard, 1, 0, 0.1, 0.0, rejected=rejected)
    ledger[9_000_000] = ShardDone(9_000_000, 1, 0, 0.1, 0.0, rejected=3)  # the overflow dict too
    assert ledger.rejected_shards() == [1, 7, 9_000_000]
    del ledger[1]
    assert ledger.rejected_shards() == [7, 9_000_000]


def test_a_batch_call_reports_each_unit_and_goes_on_after_a_worker_error(tmp_path):
    from facegen.runner.distributors import ShardActor

    out = str(tmp_path / "ds")
    task = ShardTask(functools.partial(SimulatedWorker, 0.0, fail_shards={1}), out, "fp")
    actor = ShardActor(task)  # the actor's body, in this process
    results = actor.run_batch(units_from_table(_table(6, 2)))
    assert [s.shard if s is not None else None for s, _ in results] == [0, None, 2]
    assert results[1][1] == "RuntimeError: injected error in shard 1"
    assert sorted(all_shard_stats(Location(out))) == [0, 2]


def test_an_actor_dying_mid_batch_retries_only_the_running_unit(tmp_path):
    """Of a batch whose actor died: shards with a marker are done, the first without one was running (its
    attempt counts), the ones after it never started (re-sent at the same attempt)."""
    from collections import deque

    out = str(tmp_path / "ds")
    units = units_from_table(_table(10, 2))  # shards 0..4
    task = ShardTask(functools.partial(SimulatedWorker, 0.0), out, "fp")
    assert run_shards(units[:2], task, progress=False).ok  # the actor wrote shards 0 and 1, then died in 2
    root = Location(out)
    root.write_bytes_atomic(ShardPaths(2).tar + TEMP_MARK + "x", b"half a tar")
    retry: deque = deque()
    failures: list = []

    def failed(unit, attempt, error):
        failures.append((unit.shard, attempt, error))
        retry.append((unit, attempt + 1))

    pool = RayDistributor(1)
    outcomes = list(pool._died_mid_batch(task, units, [1, 2, 1, 1, 3], "actor died: x", failed, retry))
    assert [(o.shard, o.attempts, o.stats.count) for o in outcomes] == [(0, 1, 2), (1, 2, 2)]
    assert failures == [(2, 1, "actor died: x")]
    assert [(u.shard, a) for u, a in retry] == [(3, 1), (4, 3), (2, 2)]
    assert not [n for n in root.list("shards") if TEMP_MARK in n]  # the running unit's temporaries are gone


@pytest.mark.slow
def test_short_units_go_several_per_call_with_a_crash_retrying_only_its_shard(ray_local, tmp_path):
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    n, per_shard = 80, 2
    worker = functools.partial(SimulatedWorker, 0.0, crash_shards={30}, crash_dir=str(crash_dir))
    out = str(tmp_path / "ds")
    task = ShardTask(worker, out, "fp")
    pool = RayDistributor(2, num_cpus=0.25, batch_seconds=10.0, max_batch=8)
    summary = run_shards(units_from_table(_table(n, per_shard)), task, pool, progress=False)
    assert (crash_dir / "crash-30").exists()  # the actor really died, mid-batch
    assert pool._batch_size() == 8  # zero-cost shards: full batches after the first result
    assert summary.ok and summary.retried == {30: 2}
    assert sorted(summary.done) == list(range(n // per_shard)) and summary.samples == n
    stats = all_shard_stats(Location(out))
    assert sorted(stats) == list(range(n // per_shard)) and sum(s.count for s in stats.values()) == n


def test_plan_units_are_made_one_at_a_time_not_a_row_group_at_once(tmp_path):
    import gc

    import pyarrow.parquet as pq

    from facegen.runner.units import units_from_parquet

    path = tmp_path / "plan.parquet"
    pq.write_table(_table(20_000, 1), path, row_group_size=20_000)  # one row group of 20,000 one-row shards
    units = units_from_parquet(str(path), skip={0})
    first = next(units)
    alive = sum(type(o) is WorkUnit for o in gc.get_objects())  # type(): isinstance wakes lazy module proxies
    assert first.shard == 1 and alive < 100, alive  # a list of the group's units held 20,000 table slices
    assert sum(1 for _ in units) == 19_998


def test_the_unit_feed_gives_retries_first_and_says_when_the_end_is_near():
    from facegen.runner.distributors import _UnitFeed

    units = units_from_table(_table(6, 2))  # shards 0..2
    feed = _UnitFeed(units, lookahead=2)
    assert feed.plenty()  # 3 waiting
    assert feed.pop()[0].shard == 0 and feed.plenty()  # 2 waiting
    feed.retry.append((units[0], 2))
    assert feed.pop() == (units[0], 2)  # a retry goes before the source
    assert feed.pop()[0].shard == 1 and not feed.plenty()  # 1 waiting: no more queued calls
    assert feed.pop()[0].shard == 2 and feed.pop() is None


@pytest.mark.slow
def test_an_actor_dying_with_a_queued_call_retries_the_running_unit_and_resends_the_queued_one(ray_local, tmp_path):
    """With two calls in flight per actor, a crash loses both calls: the running shard's attempt counts,
    the queued one (never started) goes again at attempt 1, and every sample is written once."""
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    n, per_shard = 12, 2  # shards 0..5
    worker = functools.partial(SimulatedWorker, 0.3, crash_shards={1}, crash_dir=str(crash_dir), crash_at=0.5)
    out = str(tmp_path / "ds")
    pool = RayDistributor(1, num_cpus=0.2, queue_depth=2, batch_seconds=0.0)
    summary = run_shards(units_from_table(_table(n, per_shard)), ShardTask(worker, out, "fp"), pool, progress=False)
    assert (crash_dir / "crash-1").exists()  # the actor really died, running shard 1
    assert pool.queued_calls > 0  # shard 2 was waiting on it
    assert summary.ok and summary.retried == {1: 2}  # shard 2 was not charged an attempt
    stats = all_shard_stats(Location(out))
    assert sorted(stats) == list(range(n // per_shard)) and sum(s.count for s in stats.values()) == n
    assert len({s.pid for s in stats.values()}) == 2  # the first actor, then its replacement
    assert not [p for p in Location(out).list("shards") if TEMP_MARK in p]


@pytest.mark.slow
def test_with_queue_depth_one_no_call_waits_on_a_busy_actor(ray_local, tmp_path):
    out = str(tmp_path / "ds")
    pool = RayDistributor(2, num_cpus=0.2, queue_depth=1, batch_seconds=0.0)
    summary = run_shards(units_from_table(_table(12, 2)), ShardTask(functools.partial(SimulatedWorker, 0.05), out, "fp"), pool,
                         progress=False)
    assert summary.ok and summary.samples == 12 and pool.queued_calls == 0


def test_an_actor_pays_the_writers_first_use_at_start_not_in_its_first_shard(tmp_path):
    """16 actors importing pandas in their first shard at once cost every one of them 1.6 s (issue 13)."""
    unit_file = tmp_path / "unit.pkl"
    unit_file.write_bytes(pickle.dumps(units_from_table(_table(2, 2))[0]))  # as Ray hands it to an actor
    script = f"""
import functools, pickle, sys
from facegen.runner import ShardTask
from facegen.runner.distributors import ShardActor
from facegen.runner.simulated import SimulatedWorker
unit = pickle.loads(open({str(unit_file)!r}, "rb").read())
assert "pandas" not in sys.modules  # a fresh actor process
actor = ShardActor(ShardTask(functools.partial(SimulatedWorker, 0.0), {str(tmp_path / 'ds')!r}, "fp"))
before = set(sys.modules)
actor.run(unit)
print(sorted({{m.split(".")[0] for m in set(sys.modules) - before}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "pandas" not in out, out  # imported while the actor started, not by its first shard


def test_simulated_shard_times_spread_evenly_around_their_mean():
    worker = SimulatedWorker(1.0, jitter=0.2)
    times = [worker.shard_seconds(s) for s in range(320)]
    assert min(times) >= 0.8 and max(times) <= 1.2 and max(times) - min(times) > 0.35
    for start in (0, 100, 300):  # any 20 consecutive shards average the nominal time
        assert abs(sum(times[start : start + 20]) / 20 - 1.0) < 0.02
    assert SimulatedWorker(1.0).shard_seconds(7) == 1.0
    with pytest.raises(ValueError, match="jitter"):
        SimulatedWorker(1.0, jitter=1.0)
