"""SIGKILL during regeneration round 2, then the same command: every plan row ends exactly once -- as a
sample or as a reject of its last round -- and `inspect` passes (issue 11, reliability harness style).

Deterministic regardless of what the model draws: an impossible pose tolerance rejects every image of
the rows with landmark control in every round (pose is checked only there), rows with identity control
only are accepted in round 0, so rounds run until the budget is spent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from facegen.data.inspect import inspect_dataset

from .conftest import write_manifest

pytestmark = pytest.mark.slow
FACEGEN = [str(Path(__import__("sys").executable).with_name("facegen"))]


def _balance(manifest: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), "--in-process", "--no-progress"]
    return subprocess.Popen(cmd, cwd=out.parent, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_in_round_2_then_the_same_command_finishes_every_row_once(tmp_path):
    # 8 rows (4 "id", 4 "id+lmk") in 4 shards of 2; budget 2.5 x 8 = 20 images: rounds 0 (8), 1 (4), 2 (4)
    manifest = write_manifest(tmp_path, per_identity=4, per_shard=2, controls="{id: 0.5, id+lmk: 0.5}", pose_deg=0.001,
                              max_rounds=3, factor=2.5)  # fmt: skip
    out = tmp_path / "ds"
    marker = tmp_path / "paused"
    # rounds 1 and 2 spread their 4 rows like round 0 but never thinner than a sampler batch (4), capped at
    # samples_per_shard (2): round 1 is shards 4..5, round 2 shards 6..7; stop after round 2's first
    proc = _balance(manifest, out, {"FACEGEN_DRILL_PAUSE": f"shard-done-6:{marker}"})
    deadline = time.monotonic() + 1800  # generous: the CI box may be shared
    try:
        while not marker.exists():
            assert proc.poll() is None, f"ended before round 2: {proc.communicate()}"
            assert time.monotonic() < deadline, "never reached round 2"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "rounds" / "round_02.parquet").exists() and (out / "shards" / "000006_stats.json").exists()
    assert not (out / "shards" / "000007_stats.json").exists() and not (out / "summary.json").exists()

    again = _balance(manifest, out)
    stdout, stderr = again.communicate(timeout=1800)
    assert again.returncode == 0, stderr[-3000:]
    assert "measured (regenerate): 4 accepted, 12 rejected (pose 12) in 3 round(s); shortfall 4" in stdout, stdout

    labels = pd.read_parquet(out / "labels.parquet")
    rejects = pd.read_parquet(out / "rejects.parquet")
    keys = labels["key"].tolist() + rejects["key"].tolist()
    assert len(keys) == len(set(keys)) == 8 + 4 + 4  # every generated image once: 0 lost, 0 duplicate
    assert sorted(labels["index"]) == sorted(set(labels["index"])) and len(labels) == 4  # the "id" rows
    assert (labels["controls"] == "id").all() and (labels["round"] == 0).all()
    assert sorted(rejects.groupby("round").size().tolist()) == [4, 4, 4]  # each lmk row rejected in rounds 0, 1, 2
    assert set(rejects["key"]) >= {f"{k}_r02" for k in rejects.loc[rejects["round"] == 0, "key"]}
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verification"]
    assert summary["complete"] and v["rounds_run"] == 3 and [r["generated"] for r in v["per_round"]] == [8, 4, 4]
    assert (v["generated"], v["budget_images"], v["dropped"], v["shortfall"]) == (16, 20, 4, 4)
    assert summary["distributions"]["controls"]["shortfall"] == [0, 4, 0, 0]  # id+lmk is short by its 4 rows
    assert summary["resumed_shards"] >= 7  # rounds 0 and 1 and shard 6 were kept, not redone
    report = inspect_dataset(str(out))
    assert report.ok, report.problems


def test_a_raised_budget_continues_the_rounds_a_lowered_one_is_refused(tmp_path):
    from facegen.errors import FacegenError

    from .conftest import balance_in_process

    def manifest(max_rounds: int, seed: int = 3) -> Path:
        return write_manifest(tmp_path, per_identity=4, per_shard=2, controls="{id: 0.5, id+lmk: 0.5}", pose_deg=0.001,
                              max_rounds=max_rounds, factor=2.5, seed=seed)  # fmt: skip

    out = tmp_path / "ds"
    first = balance_in_process(manifest(2), out)
    assert first.summary["verification"]["shortfall"] == 4 and first.summary["verification"]["rounds_run"] == 2
    before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}

    more = balance_in_process(manifest(3), out)  # the shortfall's answer: a larger budget, same --out
    v = more.summary["verification"]
    assert v["rounds_run"] == 3 and [r["generated"] for r in v["per_round"]] == [8, 4, 4]
    assert more.summary["resumed_shards"] == 6  # rounds 0 and 1 kept (4 + 2 shards), not redone
    assert all((out / "shards" / name).stat().st_mtime_ns == t for name, t in before.items())
    rejects = pd.read_parquet(out / "rejects.parquet")
    keys = pd.read_parquet(out / "labels.parquet")["key"].tolist() + rejects["key"].tolist()
    assert len(keys) == len(set(keys)) == 16 and sorted(rejects.groupby("round").size().tolist()) == [4, 4, 4]
    report = inspect_dataset(str(out))
    assert report.ok, report.problems
    again = balance_in_process(manifest(3), out)  # and the continued run resumes like any other
    assert again.summary["resumed_shards"] == 8 and again.summary["verification"]["per_round"] == v["per_round"]

    with pytest.raises(FacegenError, match="budget can be raised to continue a run, not lowered"):
        balance_in_process(manifest(2), out)
    with pytest.raises(FacegenError, match="different manifest"):
        balance_in_process(manifest(3, seed=4), out)
    assert inspect_dataset(str(out)).ok  # refused runs changed nothing


def test_rows_a_spent_budget_left_out_are_made_when_the_budget_is_raised(tmp_path):
    """A budget that runs out mid-round leaves some rejects unscheduled; raising it (same --out) makes
    those rows in the next round together with the last round's rejects, and no empty round is kept."""
    from .conftest import balance_in_process

    def manifest(max_rounds: int, factor: float) -> Path:
        return write_manifest(tmp_path, per_identity=4, per_shard=2, controls="{id: 0.5, id+lmk: 0.5}", pose_deg=0.001,
                              max_rounds=max_rounds, factor=factor)  # fmt: skip

    out = tmp_path / "ds"
    first = balance_in_process(manifest(4, 1.25), out)  # budget 10 images: 8 in round 0, 2 of the 4 rejects in round 1
    v = first.summary["verification"]
    assert [r["generated"] for r in v["per_round"]] == [8, 2] and v["shortfall"] == 4
    assert sorted(p.name for p in (out / "rounds").iterdir()) == ["round_01.parquet"]  # no empty round 2 on disk

    import pyarrow.parquet as pq

    from facegen.runner.rounds import ROUND_PLAN_SCHEMA

    pq.write_table(ROUND_PLAN_SCHEMA.empty_table(), out / "rounds" / "round_02.parquet")  # what older versions left

    more = balance_in_process(manifest(4, 2.5), out)  # budget 20: round 2 = the 2 left out + round 1's 2 rejects
    v = more.summary["verification"]
    assert [r["generated"] for r in v["per_round"]] == [8, 2, 4, 4] and v["shortfall"] == 4
    rejects = pd.read_parquet(out / "rejects.parquet")
    made = rejects.groupby("index")["round"].apply(sorted).to_dict()
    assert len(made) == 4 and sorted(map(tuple, made.values())) == [(0, 1, 2, 3)] * 2 + [(0, 2, 3)] * 2
    keys = pd.read_parquet(out / "labels.parquet")["key"].tolist() + rejects["key"].tolist()
    assert len(keys) == len(set(keys)) == 18
    assert inspect_dataset(str(out)).ok
