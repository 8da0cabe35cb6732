"""Top-ups are measured too (manifest `balance:` + `verify: {mode: measure}`): every generated image keeps
its measured columns, and summary.json adds the source's counts to the accepted ones per class."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.data.inspect import inspect_dataset

from .conftest import balance_in_process, write_manifest

pytestmark = pytest.mark.slow


def test_topup_is_measured_and_counts_source_plus_accepted(tmp_path):
    source = tmp_path / "source.parquet"
    pq.write_table(pa.table({"emotion": ["happy"] * 6 + ["neutral"] * 2}), source)  # skewed toward happy
    path = write_manifest(tmp_path, mode="measure")
    text = path.read_text().replace("images_per_identity: 6\n", f"balance: {{source: {source}, column: emotion, total: 6}}\n")
    path.write_text(text)
    out = tmp_path / "ds"
    result = balance_in_process(path, out)
    assert result.complete, result.summary
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == 6 and labels["measured"].all() and (labels["target_emotion"] != 1).all()  # no more happy
    assert not (out / "rejects.parquet").exists() or pd.read_parquet(out / "rejects.parquet").empty  # measure keeps all
    summary = json.loads((out / "summary.json").read_text())
    emotion = summary["distributions"]["emotion"]
    assert emotion["source"] == [2, 6, 0, 0, 0, 0, 0, 0]
    accepted = [int(((labels["target_emotion"] == k) & labels["accepted"]).sum()) for k in range(8)]
    achieved = [int(((labels["measured_emotion"] == k) & labels["accepted"]).sum()) for k in range(8)]
    assert emotion["accepted"] == accepted and emotion["achieved"] == achieved
    assert emotion["after_accepted"] == [s + a for s, a in zip(emotion["source"], accepted)]
    assert emotion["after_achieved"] == [s + a for s, a in zip(emotion["source"], achieved)]
    assert summary["verification"]["mode"] == "measure" and summary["verification"]["dropped"] == 0
    assert summary["verification"]["shortfall"] == 6 - int(labels["accepted"].sum())  # kept, but out of tolerance
    assert inspect_dataset(str(out)).ok
