"""write_plan: byte-identical files, keys/shards/row groups, seeds, exemplar draws, atomic failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.labels import PLAN_SCHEMA
from facegen.manifest import load_manifest, plan_samples, validate_manifest, write_plan
from facegen.manifest.plan import sample_seeds

REPO = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(seed: int = 0, **targets):
    data = {
        "version": 1,
        "seed": seed,
        "output": {"samples_per_shard": 7},
        "identities": {"random": {"count": 5, "max_similarity": 0.3}},
        "images_per_identity": 9,
        "targets": {"pose": {"yaw": {"normal": {"mean": 0, "std": 20}}, "pitch": {"uniform": [-10, 10]}}, **targets},
    }
    return validate_manifest(data, source="<test>", lines={}, base_dir=Path.cwd())


def test_same_manifest_and_seed_give_byte_identical_files(tmp_path: Path):
    a = write_plan(_manifest(seed=5), tmp_path / "a")
    b = write_plan(_manifest(seed=5), tmp_path / "b")
    for name in ("plan.parquet", "identities.npy", "plan_summary.json"):
        assert _digest(tmp_path / "a" / name) == _digest(tmp_path / "b" / name), name
    c = write_plan(_manifest(seed=6), tmp_path / "c")
    assert _digest(c.plan_path) != _digest(a.plan_path)
    assert a.num_rows == 45 and a.num_shards == 7 and a.num_identities == 5


def test_plan_schema_keys_shards_and_row_groups(tmp_path: Path):
    info = write_plan(_manifest(), tmp_path)
    f = pq.ParquetFile(info.plan_path)
    assert f.schema_arrow == PLAN_SCHEMA
    table = f.read()
    keys = table.column("key").to_pylist()
    index = table.column("index").to_numpy()
    assert keys == sorted(keys) and len(set(keys)) == len(keys) and not any("." in k for k in keys)
    assert keys[:2] == ["000000000", "000000001"]
    assert np.array_equal(index, np.arange(45))
    assert np.array_equal(table.column("shard").to_numpy(), index // 7)
    groups_of_shard: dict[int, set[int]] = {}
    for rg in range(f.metadata.num_row_groups):  # row groups hold whole shards (several small ones)
        for shard in f.read_row_group(rg, columns=["shard"]).column("shard").to_pylist():
            groups_of_shard.setdefault(shard, set()).add(rg)
    assert all(len(groups) == 1 for groups in groups_of_shard.values())
    ids = np.load(info.identities_path)
    assert ids.shape == (5, 512) and ids.dtype == np.float32
    assert np.allclose(np.linalg.norm(ids, axis=1), 1, atol=1e-6)


def test_plan_samples_equals_written_plan(tmp_path: Path):
    m = _manifest()
    assert plan_samples(m).equals(pq.read_table(write_plan(m, tmp_path).plan_path))


def test_sample_seeds_deterministic_unique_non_negative():
    s = sample_seeds(3, np.arange(100_000))
    assert (s >= 0).all() and len(np.unique(s)) == len(s)
    assert np.array_equal(s[500:600], sample_seeds(3, np.arange(500, 600)))
    assert not np.array_equal(s[:10], sample_seeds(4, np.arange(10)))


def test_noise_seeds_depend_only_on_manifest_seed_and_index():
    uniform, happy = plan_samples(_manifest()), plan_samples(_manifest(emotion="happy"))
    assert uniform.column("seed").equals(happy.column("seed"))
    assert np.array_equal(uniform.column("seed").to_numpy(), sample_seeds(0, np.arange(45)))


@pytest.fixture
def bank_path(tmp_path: Path) -> Path:
    from facegen.conditions.exemplars import write_exemplar_bank
    from facegen.conditions.template import neutral_template

    rng = np.random.default_rng(0)
    n = 12
    emotion = np.array([0, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7, 1])
    probs = np.full((n, 8), 0.02, dtype=np.float32)
    probs[np.arange(n), emotion] = 0.86
    path = tmp_path / "bank.parquet"
    write_exemplar_bank(
        path,
        landmarks=neutral_template()[None] + rng.normal(0, 0.003, (n, 478, 3)).astype(np.float32),
        emotion=emotion,
        valence=rng.uniform(-1, 1, n),
        arousal=rng.uniform(-1, 1, n),
        emotion_probs=probs,
        exemplar=np.arange(100, 100 + n)[::-1],  # ids in reverse: rows are reordered on load
    )
    return path


def test_exemplars_drawn_per_target_emotion(bank_path: Path):
    from facegen.conditions.exemplars import load_exemplar_bank

    m = _manifest(emotion="uniform", expression={"exemplars": str(bank_path)})
    plan = plan_samples(m)
    bank = load_exemplar_bank(bank_path)
    ex = plan.column("exemplar").to_numpy()
    assert (ex >= 0).all()
    assert np.array_equal(bank.emotion[ex], plan.column("emotion").to_numpy())
    assert np.array_equal(bank.valence[ex], plan.column("valence").to_numpy())
    assert np.allclose(bank.emotion_probs[ex], np.array(plan.column("emotion_probs").to_pylist()))
    assert len(np.unique(ex[plan.column("emotion").to_numpy() == 2])) > 1  # several sad exemplars used


def test_bank_missing_a_needed_class_fails_cleanly(bank_path: Path, tmp_path: Path, capsys):
    from facegen.conditions.exemplars import load_exemplar_bank

    bank = load_exemplar_bank(bank_path)
    keep = bank.emotion != 7
    from facegen.conditions.exemplars import write_exemplar_bank

    small = tmp_path / "nocontempt.parquet"
    write_exemplar_bank(small, landmarks=bank.landmarks[keep], emotion=bank.emotion[keep], valence=bank.valence[keep],
                        arousal=bank.arousal[keep], emotion_probs=bank.emotion_probs[keep])
    text = (REPO / "manifests" / "tiny.yaml").read_text().replace("expression: neutral", f"expression: {{exemplars: {small}}}")
    man = tmp_path / "m.yaml"
    man.write_text(text)
    out = tmp_path / "out"
    assert main(["plan", "--manifest", str(man), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "targets.expression.exemplars" in err[0] and "contempt" in err[0]
    assert not (out / "plan.parquet").exists() and not list(out.glob(".*tmp"))
    with pytest.raises(FacegenError):
        plan_samples(load_manifest(man))


def test_failed_replan_keeps_previous_plan(tmp_path: Path, capsys):
    good = write_plan(_manifest(), tmp_path)
    before = _digest(good.plan_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "manifests" / "tiny.yaml").read_text().replace("count: 4", "count: 4000").replace("max_similarity: 0.3", "max_similarity: 0.01"))
    assert main(["plan", "--manifest", str(bad), "--out", str(tmp_path)]) == 2
    assert _digest(good.plan_path) == before


def test_cli_plan_demo_writes_table_and_png(tmp_path: Path, capsys):
    assert main(["plan", "--manifest", str(REPO / "manifests" / "demo.yaml"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "target" in out and "planned" in out and "64 rows, 2 shards" in out
    # one image per emotion class per identity: the demo's preview shows one row per class
    plan = pq.read_table(tmp_path / "plan.parquet")
    assert sorted(np.bincount(plan.column("emotion").to_numpy(), minlength=8)) == [8] * 8
    png = (tmp_path / "plan.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "affect.yaml", "topup.yaml"])
def test_shipped_manifests_validate(name: str, capsys):
    assert main(["manifest", "validate", str(REPO / "manifests" / name)]) == 0
