"""Bounded-memory planning: streamed bin codes (keyed permutations) and row groups of whole shards.

Big plans (> IN_MEMORY_MAX_ROWS rows) never hold per-row arrays; here the threshold and the block size
are lowered so the streaming path runs on small plans. The 10**8-row measurement lives in
benchmarks/plan_bounded_memory.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import facegen.manifest.plan as plan_mod
from facegen.manifest import plan_samples, validate_manifest, write_plan
from facegen.manifest.distributions import apportion
from facegen.manifest.plan import _Permutation, estimate_plan_memory


def _manifest(spp: int = 7, count: int = 6, per_id: int = 500, seed: int = 3):
    data = {
        "limits": {"max_images": 10**12},
        "version": 1,
        "seed": seed,
        "output": {"samples_per_shard": spp},
        "identities": {"random": {"count": count, "max_similarity": 0.9}},
        "images_per_identity": per_id,
        "targets": {
            "emotion": {"happy": 0.5, "sad": 0.25, "fear": 0.25},
            "pose": {"yaw": {"normal": {"mean": 0, "std": 20}, "bins": 5}, "pitch": {"uniform": [-10, 10], "bins": 3}, "roll": 0},
            "controls": {"id": 0.2, "id+lmk+emo": 0.8},
        },
    }
    return validate_manifest(data, source="<test>", lines={}, base_dir=Path.cwd())


@pytest.fixture
def streaming(monkeypatch):
    monkeypatch.setattr(plan_mod, "IN_MEMORY_MAX_ROWS", 0)
    monkeypatch.setattr(plan_mod, "BLOCK_ROWS", 1000)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097, 65537])
def test_permutation_is_a_bijection(n: int):
    perm = _Permutation(n, seed=5, stream=10)
    image = perm(np.arange(n))
    assert np.array_equal(np.sort(image), np.arange(n))
    assert np.array_equal(perm(np.arange(n // 2, n)), image[n // 2 :])  # blocks map on their own


def test_streamed_plan_has_exact_counts_and_mixes_bins(streaming, tmp_path: Path):
    m = _manifest()
    info = write_plan(m, tmp_path)
    table = pq.read_table(info.plan_path)
    n = 3000
    assert table.num_rows == n
    assert np.bincount(table.column("identity").to_numpy(), minlength=6).tolist() == [500] * 6
    emotion = table.column("emotion").to_numpy()
    assert np.bincount(emotion, minlength=8).tolist() == apportion(m.targets.emotion.as_list(), n).tolist()
    summary = json.loads(info.summary_path.read_text())
    assert summary["emotion"]["planned"] == np.bincount(emotion, minlength=8).tolist()
    assert summary["controls"]["planned"] == [600, 0, 0, 2400]
    assert (table.column("roll").to_numpy() == 0).all()
    # mixed: every block of 100 rows sees several identities and emotions (not sorted runs)
    ids = table.column("identity").to_numpy()
    assert min(len(np.unique(ids[s : s + 100])) for s in range(0, n, 100)) >= 4
    assert min(len(np.unique(emotion[s : s + 100])) for s in range(0, n, 100)) == 3
    yaw = table.column("yaw").to_numpy()
    assert abs(float(np.corrcoef(yaw, ids)[0, 1])) < 0.1  # streams are independent


def test_streamed_plan_is_deterministic_and_equals_plan_samples(streaming, tmp_path: Path):
    a = write_plan(_manifest(), tmp_path / "a")
    b = write_plan(_manifest(), tmp_path / "b")
    for name in ("plan.parquet", "plan_summary.json", "identities.npy"):
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).digest() == hashlib.sha256((tmp_path / "b" / name).read_bytes()).digest()
    assert plan_samples(_manifest()).equals(pq.read_table(a.plan_path))
    other = write_plan(_manifest(seed=4), tmp_path / "c")
    assert not pq.read_table(other.plan_path).column("identity").equals(pq.read_table(a.plan_path).column("identity"))


@pytest.mark.parametrize("spp", [7, 1000, 2500])
def test_row_groups_hold_whole_shards_and_stay_few(streaming, tmp_path: Path, spp: int):
    info = write_plan(_manifest(spp=spp), tmp_path)
    f = pq.ParquetFile(info.plan_path)
    groups_of_shard: dict[int, set[int]] = {}
    for rg in range(f.metadata.num_row_groups):
        shards = f.read_row_group(rg, columns=["shard"]).column("shard").to_numpy()
        assert len(shards) <= 2 * plan_mod.BLOCK_ROWS
        if spp > plan_mod.BLOCK_ROWS:
            assert len(set(shards.tolist())) == 1  # a big shard spans groups, a group never spans shards
        for shard in set(shards.tolist()):
            groups_of_shard.setdefault(shard, set()).add(rg)
    if spp <= plan_mod.BLOCK_ROWS:
        assert all(len(g) == 1 for g in groups_of_shard.values())
    assert f.metadata.num_row_groups <= 3000 // min(spp * max(1, plan_mod.BLOCK_ROWS // spp), plan_mod.BLOCK_ROWS) + 3


def test_small_plans_keep_their_in_memory_layout(tmp_path: Path):
    """Below the threshold the codes are the seeded in-place shuffles of earlier versions."""
    from facegen.manifest.distributions import shuffled_codes

    m = _manifest()
    table = plan_samples(m)
    rng = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(10,)))
    expected = shuffled_codes(apportion(np.ones(6), 3000), rng, np.int32)
    assert np.array_equal(table.column("identity").to_numpy(), expected)


def test_memory_estimate_grows_only_with_row_groups_for_streamed_plans():
    small, big = _manifest(per_id=1_000_000, spp=1000), _manifest(per_id=10_000_000, spp=1000)
    # 6e6 -> 6e7 rows: only the writer's per-row-group metadata (~rows / BLOCK_ROWS groups) grows
    assert estimate_plan_memory(big, 6) - estimate_plan_memory(small, 6) == pytest.approx(
        (60_000_000 - 6_000_000) / plan_mod.BLOCK_ROWS * plan_mod._ROW_GROUP_BYTES, rel=0.01)
    assert estimate_plan_memory(_manifest(per_id=16_666_667, spp=1000), 6) < 1 << 30  # 10**8 rows
    in_memory = _manifest(per_id=500_000)
    assert estimate_plan_memory(in_memory, 6) > 16 * 3_000_000


def test_aliases_within_bounds_still_work(tmp_path: Path, write_manifest, manifest_text):
    from facegen.manifest import load_manifest

    text = manifest_text({7: "  guidance: &g {id: 2.5, lmk: 2.0, emo: 2.0}"}, "extra_guidance: *g\n")
    m = write_manifest(text.replace("extra_guidance: *g\n", ""))
    assert load_manifest(m).sampler.guidance.id == 2.5
    text = manifest_text({18: "    yaw: &axis {uniform: [-30, 30]}\n    pitch: *axis"})
    assert load_manifest(write_manifest(text)).targets.pose.pitch.uniform == [-30.0, 30.0]
