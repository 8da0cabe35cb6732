"""`facegen balance` end to end on real Ray with the tiny model: demo manifest, actor crash, kill + resume,
determinism, refusal of a different manifest, and stock readers (webdataset, pandas) on the output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from facegen.data.inspect import inspect_dataset
from facegen.io import Location, all_shard_stats
from facegen.runner import CRASH_ENV
from facegen.runner.balance import BalanceConfig, run_balance

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FACEGEN = [sys.executable, "-m", "facegen.cli.main"]


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _labels(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "labels.parquet")


def _assert_matches_plan(out: Path) -> None:
    from facegen.labels import TARGET_RENAMES

    plan = pq.read_table(out / "plan.parquet").to_pandas()
    labels = _labels(out)
    assert list(labels["key"]) == list(plan["key"])  # one row per plan row, in plan order
    for column in plan.columns:  # every planned label survives unchanged (as target_* where renamed)
        left, right = labels[TARGET_RENAMES.get(column, column)].tolist(), plan[column].tolist()
        if column == "emotion_probs":
            np.testing.assert_array_equal(np.stack(left), np.stack(right))
        else:
            assert left == right, column


@pytest.fixture(scope="module")
def demo_dataset(ray_local, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "ds"
    result = run_balance(BalanceConfig(manifest=REPO / "manifests" / "tiny.yaml", out=str(out), progress=False))
    assert result.complete, result.summary
    return out


def test_demo_manifest_end_to_end(demo_dataset):
    out = demo_dataset
    report = inspect_dataset(str(out))
    assert report.ok, report.problems
    assert report.plan_rows == report.tar_samples == report.labels_rows == 16
    _assert_matches_plan(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["samples"] == 16 and summary["failed_shards"] == {}
    emotion = summary["distributions"]["emotion"]
    assert emotion["written"] == [2] * 8 and emotion["achieved"] is None  # nothing measured: no "achieved"
    assert summary["distributions"]["counted_by"] == summary["verification"]["counted_by"] == "planned (not measured)"
    assert not _labels(out)["measured"].any() and _labels(out)["accepted"].all()
    lock = (out / "manifest.lock.yaml").read_text()
    assert "fingerprint:" in lock and "torch:" in lock and "hash:" in lock
    assert Image.open(out / "report.png").size[0] > 500
    assert Image.open(out / "preview.jpg").size[1] == 8 * 96  # one row per emotion class


def test_stock_readers_need_no_facegen(demo_dataset):
    urls = sorted(str(p) for p in (demo_dataset / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb"))
    labels = pd.read_parquet(demo_dataset / "labels.parquet")
    assert [s["__key__"] for s in samples] == list(labels["key"])
    first = samples[0]
    assert first["jpg"].shape == (64, 64, 3) and first["lmk.png"].ndim == 3
    meta = first["json"]
    assert meta["target_emotion_name"] == labels["target_emotion_name"][0] and meta["model_id"] and meta["guidance"]["id"] == 2.5
    assert int(first["cls"]) == labels["identity"][0]
    shard = pd.read_parquet(demo_dataset / "shards" / "000001.parquet")
    assert (shard["shard"] == 1).all() and len(shard) == 8


def test_actor_crash_is_retried_and_runs_are_deterministic(ray_local, small_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, str(tmp_path / "crash-marker"))
    ray_out = tmp_path / "ray"
    result = run_balance(BalanceConfig(manifest=small_manifest, out=str(ray_out), num_actors=1, cpus_per_actor=2, progress=False))
    assert (tmp_path / "crash-marker").exists()  # one actor really died mid-shard
    assert result.complete and len(result.run.retried) == 1
    assert inspect_dataset(str(ray_out)).ok

    monkeypatch.delenv(CRASH_ENV)
    local_out = tmp_path / "local"
    again = run_balance(BalanceConfig(manifest=small_manifest, out=str(local_out), distributor="in-process", progress=False))
    assert again.complete
    pd.testing.assert_frame_equal(_labels(ray_out), _labels(local_out))
    for tar in sorted((ray_out / "shards").glob("*.tar")):
        a, b = _tar_members(tar), _tar_members(local_out / "shards" / tar.name)
        assert a == b  # identical keys, labels and image bytes
    assert any(name.endswith(".png") and not name.endswith("lmk.png") for name in a)


def test_resume_refuses_a_different_manifest(small_manifest, tmp_path):
    out = tmp_path / "ds"
    run_balance(BalanceConfig(manifest=small_manifest, out=str(out), distributor="in-process", progress=False, reports=False))
    before = all_shard_stats(Location(str(out)))
    changed = tmp_path / "changed.yaml"
    changed.write_text(small_manifest.read_text().replace("seed: 7", "seed: 8"))
    proc = subprocess.run(
        [*FACEGEN, "balance", "-m", str(changed), "-o", str(out), "--in-process"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "different manifest" in proc.stderr and "--overwrite" in proc.stderr
    assert all_shard_stats(Location(str(out))) == before  # nothing touched


def test_sigkill_mid_run_then_rerun_completes_exactly_once(ray_local, tmp_path, manifest_writer):
    manifest = manifest_writer(tmp_path, per_identity=10)  # 20 images, 10 shards
    out = tmp_path / "ds"
    address = ray_local.get_runtime_context().gcs_address
    cmd = [*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), "--address", address, "--num-actors", "1",
           "--cpus-per-actor", "1", "--no-progress", "--no-reports"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list((out / "shards").glob("*_stats.json")):
            assert proc.poll() is None, "balance ended before any shard finished"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished_at_kill = len(list((out / "shards").glob("*_stats.json")))
    assert 1 <= finished_at_kill < 10
    assert not (out / "labels.parquet").exists()

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_shards"] >= finished_at_kill and summary["complete"]
    report = inspect_dataset(str(out))
    assert report.ok, report.problems  # every tar readable, keys unique, rows == samples == plan
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False)]
    assert len(keys) == len(set(keys)) == 20
    _assert_matches_plan(out)


def test_ctrl_c_stops_cleanly_and_keeps_finished_shards(ray_local, tmp_path, manifest_writer):
    manifest = manifest_writer(tmp_path, per_identity=10)
    out = tmp_path / "ds"
    cmd = [*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), "--address",
           ray_local.get_runtime_context().gcs_address, "--num-actors", "1", "--cpus-per-actor", "1", "--no-progress"]
    # A real Ctrl-C: SIGINT with Python's default handler (background processes start with it ignored).
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not list((out / "shards").glob("*_stats.json")):
        assert proc.poll() is None, "balance ended before any shard finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err
    names = [p.name for p in (out / "shards").iterdir()]
    assert not [n for n in names if ".tmp-" in n]
    done = {n[:6] for n in names if n.endswith("_stats.json")}
    assert 1 <= len(done) < 10
    assert {n[:6] for n in names} == done  # nothing but finished shards is left
    assert not (out / "labels.parquet").exists()


def test_spare_actors_without_ray_is_a_one_line_error_before_anything_is_written(tmp_path):
    out = tmp_path / "ds"
    cmd = [*FACEGEN, "balance", "-m", str(Path(__file__).resolve().parents[2] / "manifests" / "tiny.yaml"), "-o", str(out), "--in-process",
           "--spare-actors", "1", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: --spare-actors: spare actors need Ray; drop --in-process or --spare-actors"]
    assert not out.exists()  # refused before the plan was written
