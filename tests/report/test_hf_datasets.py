"""Acceptance (issue 11): Hugging Face `datasets` reads every sample of a generated dataset, offline, from
local files: through `load_dataset("webdataset", data_files=...)` and through the card's `configs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

# Runs in a child process so HF_DATASETS_OFFLINE and the cache location hold from datasets' import on.
LOAD = r"""
import io, json, sys
import datasets
from PIL import Image

root, how = sys.argv[1], sys.argv[2]
if how == "webdataset":
    import glob
    files = sorted(glob.glob(root + "/shards/*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train")
else:
    ds = datasets.load_dataset(root, split="train")  # README.md `configs` -> shards/*.tar
rows = []
for row in ds:
    image, lmk = row["jpg"], row["lmk.png"]
    rows.append({"key": row["__key__"], "json_key": row["json"]["key"], "cls": row["cls"],
                 "identity": row["json"]["identity"], "size": list(image.size), "lmk_size": list(lmk.size),
                 "mode": image.convert("RGB").mode})
print(json.dumps({"offline": datasets.config.HF_HUB_OFFLINE, "columns": sorted(ds.column_names), "rows": rows}))
"""


def _load(root: Path, how: str, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(cache), HF_DATASETS_CACHE=str(cache / "datasets"))
    proc = subprocess.run([sys.executable, "-c", LOAD, str(root), how], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_every_sample(result: dict, root: Path) -> None:
    labels = pq.read_table(root / "labels.parquet", columns=["key", "identity", "width", "height"]).to_pylist()
    by_key = {r["key"]: r for r in labels}
    rows = result["rows"]
    assert result["offline"] is True
    assert {"jpg", "json", "cls", "lmk.png", "__key__"} <= set(result["columns"])
    assert len(rows) == len(labels) == 16
    assert sorted(r["key"] for r in rows) == sorted(by_key)  # every sample exactly once
    for r in rows:
        want = by_key[r["key"]]
        assert r["json_key"] == r["key"]
        assert r["cls"] == r["identity"] == want["identity"]
        assert r["size"] == [want["width"], want["height"]]
        assert r["lmk_size"][0] > 0 and r["mode"] == "RGB"


def test_load_dataset_webdataset_reads_every_sample(card_dataset: Path, tmp_path: Path) -> None:
    _check_every_sample(_load(card_dataset, "webdataset", tmp_path / "hf"), card_dataset)


def test_load_dataset_from_the_card_configs(card_dataset: Path, tmp_path: Path) -> None:
    _check_every_sample(_load(card_dataset, "folder", tmp_path / "hf"), card_dataset)
