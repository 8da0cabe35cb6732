"""Issue 12 item 2: one writer per dataset. A second `balance` (or an `--overwrite`) on a DIR that a run
is writing is refused with one line, exit 2; the first run completes with its data intact. Stale locks
(the holder died) are taken over, on local folders (flock) and on object stores (a lease object).

Old behaviour: both runs generated every shard and one died with a FileNotFoundError traceback in finalize.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import webdataset as wds

from facegen.data import inspect_dataset
from facegen.errors import FacegenError
from facegen.io import Location

from .conftest import FACEGEN, run_cli, write_two_shard_manifest


@pytest.mark.slow  # one real (in-process) generation of 4 shards, paused after its first shard
def test_second_writer_and_overwrite_are_refused_while_a_run_writes(tmp_path: Path):
    manifest = write_two_shard_manifest(tmp_path, **{"count: 2,": "count: 4,"})  # 4 shards
    other = write_two_shard_manifest(tmp_path, "other.yaml", **{"seed: 0": "seed: 1"})
    out = tmp_path / "ds"
    marker = tmp_path / "paused"
    # The first run pauses after its first shard (a fault-drill hook), so the others meet it mid-run.
    env = {**os.environ, "FACEGEN_DRILL_PAUSE": f"shard-done:{marker}"}
    first = subprocess.Popen([*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), "--in-process", "--no-progress"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli(["balance", "-m", str(manifest), "-o", str(out), "--in-process", "--no-progress"], tmp_path, timeout=120)
        line = second.assert_one_line_error(str(out), "another facegen run", f"pid {first.pid}", socket.gethostname(), seconds=60, rss_mib=3000)
        assert "started" in line
        overwrite = run_cli(["balance", "-m", str(other), "-o", str(out), "--overwrite", "--in-process", "--no-progress"], tmp_path, timeout=120)
        overwrite.assert_one_line_error(str(out), "another facegen run", seconds=60, rss_mib=3000)
        assert len(list((out / "shards").glob("*_stats.json"))) == 1  # neither touched the shards
    finally:
        marker.unlink(missing_ok=True)  # the first run goes on
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]  # the first run completes undisturbed
    report = inspect_dataset(str(out))
    assert report.ok, report.problems
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False)]
    assert len(keys) == len(set(keys)) == 4
    from facegen.io.lock import read_writer

    assert read_writer(Location(str(out)))["released"] is True


def test_stale_local_lock_is_taken_over(tmp_path: Path):
    from facegen.io.lock import WRITER_LOCK_NAME, WriterLock

    root = Location(str(tmp_path / "ds"))
    root.makedirs()
    dead = {"host": socket.gethostname(), "pid": 999_999_999, "started": "2026-01-01T00:00:00Z", "token": "x"}
    (tmp_path / "ds" / WRITER_LOCK_NAME).write_text(json.dumps(dead))  # a holder that died (no flock held)
    with WriterLock(root) as lock:
        assert lock.stale == dead
        with pytest.raises(FacegenError, match=f"another facegen run .*pid {os.getpid()}"):
            WriterLock(root).acquire()  # a second writer (another object, same process) is refused
    with WriterLock(root) as again:  # released: free again, and not "stale"
        assert again.stale is None


def test_object_store_lease(tmp_path: Path):
    from facegen.io.lock import WRITER_LOCK_NAME, WriterLock, read_writer

    root = Location(f"memory://facegen-lease-{os.getpid()}/ds")
    try:
        holder = WriterLock(root, ttl=30, settle=0).acquire()
        with pytest.raises(FacegenError, match="another facegen run"):
            WriterLock(root, ttl=30, settle=0).acquire()
        holder._stop.set()  # the holder "dies": no more renewals ...
        expired = {**read_writer(root), "host": "elsewhere", "renewed": time.time() - 31}
        root.write_bytes_atomic(WRITER_LOCK_NAME, json.dumps(expired).encode())  # ... and its lease runs out
        taker = WriterLock(root, ttl=30, settle=0).acquire()
        assert taker.stale["host"] == "elsewhere"
        taker.release()
        assert read_writer(root)["released"] is True
        dead_here = {**read_writer(root), "released": False, "pid": 999_999_999, "host": socket.gethostname(), "renewed": time.time()}
        root.write_bytes_atomic(WRITER_LOCK_NAME, json.dumps(dead_here).encode())
        WriterLock(root, ttl=30, settle=0).acquire().release()  # same host, dead pid: stale at once
    finally:
        root.remove_tree("")
