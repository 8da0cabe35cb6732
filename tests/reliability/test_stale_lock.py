"""Issue 12 item 3 (last clause): a run that failed before writing any shard does not block a corrected manifest.

`balance` writes manifest.lock.yaml before planning; a plan that then fails (here: an exemplar bank
without a class the targets need) used to leave a lock that refused the corrected manifest as
"a different manifest". A dataset with shards is still protected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from facegen.io import Location
from facegen.io.lock import LOCK_NAME, Lock, read_lock, write_lock
from facegen.runner.balance import prepare_output


def _bank_without_contempt(path: Path) -> None:
    from facegen.conditions.exemplars import write_exemplar_bank
    from facegen.conditions.template import neutral_template

    rng = np.random.default_rng(0)
    emotion = np.array([0, 1, 2, 3, 4, 5, 6])  # every class but 7 (contempt)
    probs = np.full((7, 8), 0.02, np.float32)
    probs[np.arange(7), emotion] = 0.86
    write_exemplar_bank(path, landmarks=neutral_template()[None] + rng.normal(0, 0.003, (7, 478, 3)).astype(np.float32),
                        emotion=emotion, valence=rng.uniform(-1, 1, 7), arousal=rng.uniform(-1, 1, 7), emotion_probs=probs)


@pytest.mark.slow  # two in-process `balance` runs (the second generates 2 images with the tiny model)
def test_failed_plan_does_not_block_the_corrected_manifest(tmp_path: Path, cli, base_manifest: str):
    _bank_without_contempt(tmp_path / "bank.parquet")
    bad = tmp_path / "bad.yaml"
    bad.write_text(base_manifest.replace("expression: neutral", "expression: {exemplars: bank.parquet}")
                   .replace("images_per_identity: 1", "images_per_identity: 4"))  # 8 images: one per class
    out = tmp_path / "ds"
    first = cli("balance", "--manifest", str(bad), "--out", str(out), "--in-process", "--no-progress", timeout=300)
    first.assert_one_line_error("targets.expression.exemplars", "contempt", seconds=300, rss_mib=4000)
    assert not (out / "shards").exists() or not list((out / "shards").iterdir())

    good = tmp_path / "good.yaml"
    good.write_text(base_manifest)
    second = cli("balance", "--manifest", str(good), "--out", str(out), "--in-process", "--no-progress", timeout=600, rss_limit_mib=4000)
    assert second.code == 0, second.err[-3000:]
    lock = yaml.safe_load((out / LOCK_NAME).read_text())
    assert lock["manifest_source"] == str(good)
    assert len(list((out / "shards").glob("*.tar"))) == 1


def _lock(manifest: dict) -> Lock:
    return Lock.create(manifest, source="m.yaml", source_bytes=b"x", model={"hash": "h"})


def test_dataset_with_shards_is_still_protected(tmp_path: Path):
    from facegen.errors import FacegenError

    root = Location(str(tmp_path / "ds"))
    write_lock(root, _lock({"seed": 1}))
    (tmp_path / "ds" / "shards").mkdir()
    (tmp_path / "ds" / "shards" / "000000.tar").write_bytes(b"x")
    with pytest.raises(FacegenError, match="different manifest"):
        prepare_output(root, _lock({"seed": 2}), overwrite=False)
    # without shards the old run left nothing to protect: its lock and plan files give way
    (tmp_path / "ds" / "shards" / "000000.tar").unlink()
    (tmp_path / "ds" / "plan.parquet").write_bytes(b"stale plan of the other manifest")
    assert prepare_output(root, _lock({"seed": 2}), overwrite=False) is False
    assert read_lock(root)["manifest"] == {"seed": 2}
    assert not (tmp_path / "ds" / "plan.parquet").exists()
