"""`balance` measuring in the loop on real Ray: the tiny model's images measured by the synthface proxy in
the generation actors, images outside tolerance rejected and their plan rows regenerated in later rounds.

The tiny model draws pose-less noise, so a pose tolerance of 25 degrees rejects some images in every
round (deterministically: same seeds, same pixels, same measurements)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from facegen.data.inspect import inspect_dataset
from facegen.labels import GENERATED_SCHEMA, TARGET_RENAMES
from facegen.runner.balance import BalanceConfig, run_balance
from facegen.runner.rounds import round_seeds

from .conftest import write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def regenerated(ray_local, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("regenerate")
    out = folder / "ds"
    result = run_balance(BalanceConfig(manifest=write_manifest(folder), out=str(out), num_actors=1, cpus_per_actor=1, progress=False))
    assert result.complete, result.summary
    return out


def test_rejected_rows_are_regenerated_with_new_seeds_and_round_keys(regenerated):
    out = regenerated
    plan = pq.read_table(out / "plan.parquet").to_pandas().set_index("index")
    labels = pd.read_parquet(out / "labels.parquet")
    rejects = pd.read_parquet(out / "rejects.parquet")
    assert pq.read_schema(out / "labels.parquet").equals(GENERATED_SCHEMA)
    assert pq.read_schema(out / "rejects.parquet").equals(GENERATED_SCHEMA)
    assert len(rejects) > 0 and (rejects["round"] == 0).any()  # the tolerance really rejected images
    assert labels["accepted"].all() and (labels["reject_reason"] == "").all() and labels["measured"].all()
    assert (rejects["reject_reason"] == "pose").all() and not rejects["accepted"].any()
    # every plan row once: in the dataset, or (its last image rejected, budget spent) only in rejects.parquet
    assert labels["index"].is_unique and labels["index"].tolist() == sorted(labels["index"])  # plan order
    assert labels["key"].tolist() == sorted(labels["key"])
    dropped = set(plan.index) - set(labels["index"])
    assert dropped <= set(rejects["index"]) and len(rejects) + len(labels) <= 24  # the budget: 2 x 12
    for _, row in labels.iterrows():
        r, i = int(row["round"]), int(row["index"])
        assert row["key"] == (plan.loc[i, "key"] if r == 0 else f"{plan.loc[i, 'key']}_r{r:02d}")
        assert row["seed"] == int(round_seeds(3, np.array([i]), r)[0])  # manifest seed 3; new per round
        for name, renamed in TARGET_RENAMES.items():  # targets are the plan's values, in every round
            got, want = row[renamed], plan.loc[i, name]
            assert np.array_equal(np.asarray(got), np.asarray(want)), (i, name)
        if r > 0:  # regenerated because its previous round was rejected
            assert ((rejects["index"] == i) & (rejects["round"] == r - 1)).any()
    kept = labels[labels["controls"].str.contains("lmk")]
    assert (np.abs(kept[["measured_yaw", "measured_pitch", "measured_roll"]].to_numpy()
                   - kept[["target_yaw", "target_pitch", "target_roll"]].to_numpy()).max(1) <= 25).all()  # fmt: skip
    assert (labels["measured_emotion"] >= 0).all() and labels["identity_similarity"].notna().all()
    assert labels["landmark_nme"].notna().all() and (labels["measured_emotion_name"] != "").all()


def test_summary_counts_rounds_and_bins(regenerated):
    summary = json.loads((regenerated / "summary.json").read_text())
    v = summary["verification"]
    labels = pd.read_parquet(regenerated / "labels.parquet")
    rejects = pd.read_parquet(regenerated / "rejects.parquet")
    assert v["mode"] == "regenerate" and v["counted_by"] == "measured" and v["rounds_run"] >= 2
    assert v["generated"] == len(labels) + len(rejects) <= v["budget_images"] == 24
    short = 12 - len(labels)
    assert (v["accepted"], v["rejected"], v["dropped"], v["shortfall"]) == (len(labels), len(rejects), short, short)
    assert [r["kept"] for r in v["per_round"]] == [int((labels["round"] == r["round"]).sum()) for r in v["per_round"]]
    assert v["per_round"][1]["generated"] == v["per_round"][0]["rejected"]  # round 1 remade round 0's rejects
    assert v["reject_reasons"]["pose"] == len(rejects)
    d = summary["distributions"]
    assert d["counted_by"] == "measured"
    emotion = d["emotion"]
    assert emotion["accepted"] == [int((labels["target_emotion"] == k).sum()) for k in range(8)]
    assert [p - a for p, a in zip(emotion["planned"], emotion["accepted"])] == emotion["shortfall"] and sum(emotion["shortfall"]) == short
    assert emotion["achieved"] == [int((labels["measured_emotion"] == k).sum()) for k in range(8)]  # measured classes
    assert d["yaw"]["achieved"] is not None and d["controls"]["achieved"] is None  # controls are not measurable
    measured = np.array(emotion["achieved"], float)
    target = np.array(emotion["target"], float)
    assert emotion["tv_distance_achieved_vs_target"] == pytest.approx(0.5 * np.abs(measured / measured.sum() - target / target.sum()).sum(), abs=1e-6)
    yaw = d["yaw"]  # measured yaw per stratum, plus what fell outside every stratum (a bin with no target)
    got = np.array([*yaw["achieved"], yaw["achieved_outside_edges"]], float)
    want = np.array([*yaw["target"], 0.0])
    assert yaw["tv_distance_achieved_vs_target"] == pytest.approx(0.5 * np.abs(got / got.sum() - want / want.sum()).sum(), abs=1e-6)
    assert yaw["tv_distance_achieved_vs_target"] > 0  # the tiny model's faces do not follow the targets
    assert summary["images_per_second"] > 0 and summary["complete"]


def test_inspect_and_stock_readers_on_a_dataset_made_in_rounds(regenerated):
    report = inspect_dataset(str(regenerated))
    assert report.ok, report.problems
    labels = pd.read_parquet(regenerated / "labels.parquet")
    urls = sorted(str(p) for p in (regenerated / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb"))
    assert sorted(s["__key__"] for s in samples) == labels["key"].tolist()
    meta = samples[0]["json"]
    assert {"target_yaw", "measured_yaw", "round", "accepted", "measured_emotion_probs"} <= set(meta) and "yaw" not in meta
    from facegen.data import make_dataset

    measured = [int(t) for _, t in make_dataset(str(regenerated), target="measured_emotion")]
    assert sorted(measured) == sorted(labels["measured_emotion"].tolist())
