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
    # round 2's shards are 8..11 (one row each: its 4 rows over round 0's 4 shards); stop after the first
    proc = _balance(manifest, out, {"FACEGEN_DRILL_PAUSE": f"shard-done-8:{marker}"})
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
    assert (out / "rounds" / "round_02.parquet").exists() and (out / "shards" / "000008_stats.json").exists()
    assert not (out / "shards" / "000011_stats.json").exists() and not (out / "summary.json").exists()

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
    assert summary["resumed_shards"] >= 9  # rounds 0 and 1 and shard 8 were kept, not redone
    report = inspect_dataset(str(out))
    assert report.ok, report.problems
