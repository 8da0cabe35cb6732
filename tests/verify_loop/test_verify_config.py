"""The manifest's `verify:` section (one-line errors, exit 2), its resolution, the judgement, round keys
and seeds, and the coverage check `inspect` runs on datasets made in rounds. No generation here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from facegen.cli.main import main
from facegen.manifest import load_manifest
from facegen.runner.rounds import coverage_problems, make_round_plan, plan_key, round_key, round_seeds, rows_per_round_shard
from facegen.runner.verification import VerifySettings, judge, resolve_verify, unmeasured_columns

from .conftest import write_manifest

# (id, replacement of the verify block's lines, field named in the error, line of the error)
BAD = [
    ("mode-unknown", ("  mode: regenerate", "  mode: regen"), "verify.mode", 13),
    ("estimator-unknown", ("pose: synthface", "pose: openpose"), "verify.estimators.pose", 14),
    ("identity-dlib", ("identity: synthface", "identity: dlib"), "verify.estimators.identity", 14),
    ("pose-tolerance-negative", ("pose_deg: 25", "pose_deg: -1"), "verify.tolerances.pose_deg", 15),
    ("emotion-tolerance-unknown", ("emotion: off}", "emotion: maybe}"), "verify.tolerances.emotion", 15),
    ("rounds-zero", ("max_rounds: 3", "max_rounds: 0"), "verify.max_rounds", 16),
    ("factor-below-one", ("max_total_factor: 2.0", "max_total_factor: 0.5"), "verify.max_total_factor", 17),
    ("pose-stratum-unknown", ("emotion: off}", "emotion: off, pose_stratum: nearby}"), "verify.tolerances.pose_stratum", 15),
    ("unknown-key", ("  max_rounds: 3", "  max_round: 3"), "verify.max_round", 16),
    ("tolerance-without-estimator", ("pose: synthface", "pose: none"), "verify", 12),
]


@pytest.mark.parametrize("case,edit,field,line", BAD, ids=[b[0] for b in BAD])
def test_bad_verify_section_is_one_line_exit_2(case, edit, field, line, tmp_path, capsys):
    path = write_manifest(tmp_path)
    text = path.read_text()
    assert edit[0] in text, edit
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert main(["manifest", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}:{line}: {field}:") and ";" in err[0], err[0]


def test_yaml_off_means_off_and_the_section_is_optional(tmp_path):
    path = write_manifest(tmp_path, mode="off")  # YAML 1.1 reads a bare off as false
    assert load_manifest(path).verify.mode == "off"
    path.write_text(path.read_text().split("verify:")[0])
    manifest = load_manifest(path)
    assert manifest.verify is None and "verify" not in manifest.model_dump()  # old fingerprints stay valid
    assert resolve_verify(manifest, Path("unused")) == VerifySettings()


def test_schema_backend_names_are_the_registrys():
    from facegen.analysis.registry import backend_names
    from facegen.manifest.schema import VERIFY_BACKENDS

    for kind, names in VERIFY_BACKENDS.items():
        assert set(names) == set(backend_names(kind)) - {"none", "dlib"}, kind


def test_auto_without_weights_for_a_checked_tolerance_is_one_line(tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    path = write_manifest(tmp_path)
    path.write_text(path.read_text().replace("emotion: synthface", "emotion: auto").replace("emotion: off}", f"emotion: match}}\n  models_dir: {empty}"))
    manifest = load_manifest(path)
    from facegen.errors import FacegenError

    with pytest.raises(FacegenError) as exc:
        resolve_verify(manifest, tmp_path)  # tiny is not a synthface model: auto looks for EmoNet / HSEmotion
    message = str(exc.value)
    assert f"{path}:14" in message and "verify.estimators.emotion" in message and "auto found no emotion" in message


def test_resolution_keeps_named_estimators(tmp_path):
    settings = resolve_verify(load_manifest(write_manifest(tmp_path, pose_deg=7.5)), tmp_path)
    assert settings.estimators() == {"pose": "synthface", "landmarks": "synthface", "emotion": "synthface", "identity": "synthface"}
    assert (settings.mode, settings.pose_deg, settings.emotion_match, settings.rounds) == ("regenerate", 7.5, False, 3)


def _measured(**over):
    m = {**unmeasured_columns(), "measured": True, "face_detected": True, "measured_yaw": 10.0, "measured_pitch": 0.0,
         "measured_roll": 0.0, "measured_emotion": 2, "measured_emotion_probs": [0.1] * 8, "identity_similarity": 0.5,
         "landmark_nme": 0.05}  # fmt: skip
    m.update(over)
    return m


def test_judge_checks_each_tolerance_on_the_rows_whose_control_was_on():
    s = VerifySettings(mode="reject", pose="synthface", landmarks="synthface", emotion="synthface", identity="synthface",
                       pose_deg=5, landmark_nme=0.1, emotion_match=True, identity_min_similarity=0.3)  # fmt: skip
    row = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "emotion": 2, "controls": "id+lmk+emo"}
    assert judge(s, row, _measured()) == ["pose"]
    assert judge(s, row, _measured(measured_yaw=4.0)) == []
    assert judge(s, row, _measured(measured_yaw=math.nan)) == ["pose"]  # unmeasured counts as outside
    assert judge(s, row, _measured(measured_emotion=3, identity_similarity=0.1, landmark_nme=0.2)) == ["pose", "landmarks", "emotion", "identity"]
    assert judge(s, {**row, "controls": "id"}, _measured(measured_emotion=3)) == []  # no lmk / emo control: not checked
    assert judge(s, row, _measured(face_detected=False)) == ["no-face"]


def test_pose_stratum_match_wants_the_measured_angle_in_the_targets_stratum(tmp_path):
    from facegen.errors import FacegenError
    from facegen.runner.verification import stratum

    path = write_manifest(tmp_path, pose_deg="null")  # yaw {uniform: [-30, 30], bins: 2}; pitch, roll constant 0
    plain = load_manifest(path)
    assert "pose_stratum" not in plain.model_dump()["verify"]["tolerances"]  # off: old run fingerprints stay valid
    assert resolve_verify(plain, tmp_path).pose_strata is None
    path.write_text(path.read_text().replace("emotion: off}", "emotion: off, pose_stratum: match}"))
    settings = resolve_verify(load_manifest(path), tmp_path)
    assert settings.pose_strata == {"yaw": [-30.0, 0.0, 30.0]} and settings.tolerances()["pose_stratum"] == "match"
    assert [stratum(v, [-30.0, 0.0, 30.0]) for v in (-30.0, -0.1, 0.0, 30.0, 30.5, math.nan)] == [0, 0, 1, 1, -1, -1]

    row = {"yaw": 12.0, "pitch": 0.0, "roll": 0.0, "emotion": 2, "controls": "id+lmk"}
    assert judge(settings, row, _measured(measured_yaw=29.0, measured_pitch=40.0)) == []  # same stratum; pitch unchecked
    assert judge(settings, row, _measured(measured_yaw=-1.0)) == ["pose"]  # 13 degrees off but in the other stratum
    assert judge(settings, row, _measured(measured_yaw=31.0)) == ["pose"]  # outside every stratum
    assert judge(settings, {**row, "controls": "id+emo"}, _measured(measured_yaw=-1.0, measured_emotion=2)) == []
    with_deg = VerifySettings(**{**settings.as_dict(), "pose_deg": 5.0})
    assert judge(with_deg, row, _measured(measured_yaw=20.0)) == ["pose"]  # both checks apply, one reason

    path.write_text(path.read_text().replace("pose: synthface", "pose: none"))
    with pytest.raises(FacegenError, match="pose_stratum is checked but estimators.pose is none"):
        load_manifest(path)


def test_round_keys_sort_after_their_plan_key_and_seeds_are_new_but_deterministic():
    keys = ["000000010", round_key("000000009", 2), round_key("000000009", 1), "000000009"]
    assert sorted(keys) == ["000000009", "000000009_r01", "000000009_r02", "000000010"]
    assert {plan_key(k) for k in keys} == {"000000009", "000000010"}
    from facegen.manifest.plan import sample_seeds

    index = np.arange(100)
    assert np.array_equal(round_seeds(7, index, 0), sample_seeds(7, index))  # round 0 = the plan
    r1, r2 = round_seeds(7, index, 1), round_seeds(7, index, 2)
    assert np.array_equal(r1, round_seeds(7, index, 1))
    everything = np.concatenate([sample_seeds(7, np.arange(100_000)), r1, r2])
    assert len(np.unique(everything)) == len(everything) and (everything >= 0).all()


def test_round_plan_keeps_targets_and_respects_the_limit():
    from facegen.labels import GENERATED_SCHEMA

    rows = []
    for i in (5, 2, 9):
        rows.append({f.name: None for f in GENERATED_SCHEMA} | unmeasured_columns() | dict(
            key=f"{i:09d}", index=i, shard=0, identity=1, seed=i, target_emotion=3, target_emotion_name="surprise",
            target_valence=0.1, target_arousal=0.2, target_emotion_probs=[0.125] * 8, target_yaw=float(i),
            target_pitch=0.0, target_roll=0.0, exemplar=-1, controls="id+lmk", round=0, image_format="jpg", width=8,
            height=8, steps=1, scheduler="dpmpp", guidance_id=1.0, guidance_lmk=1.0, guidance_emo=1.0, model_id="m",
            accepted=False, reject_reason="pose"))  # fmt: skip
    plan = make_round_plan(pa.Table.from_pylist(rows, schema=GENERATED_SCHEMA), 1, seed=0, first_shard=4, rows_per_shard=1, limit=2)
    assert plan.column("key").to_pylist() == ["000000002_r01", "000000005_r01"]  # plan order, budget of 2
    assert plan.column("yaw").to_pylist() == [2.0, 5.0] and plan.column("emotion").to_pylist() == [3, 3]
    assert plan.column("shard").to_pylist() == [4, 5] and plan.column("round").to_pylist() == [1, 1]
    assert plan.column("seed").to_pylist() == round_seeds(0, np.array([2, 5]), 1).tolist()


def test_round_shards_spread_like_round_0_but_never_thinner_than_a_batch():
    assert rows_per_round_shard(285, 8, 64, batch_size=32) == 36  # a big round: spread over round 0's 8 shards
    assert rows_per_round_shard(21, 8, 64, batch_size=32) == 32  # a late round: one full batch, not 8 x 3 rows
    assert rows_per_round_shard(21, 8, 16, batch_size=32) == 16  # never above samples_per_shard
    assert rows_per_round_shard(5, 8, 64) == 1  # batch_size 1: one row per shard, as many shards as round 0
    assert rows_per_round_shard(0, 8, 64, batch_size=32) >= 1


def test_coverage_every_plan_row_once_or_rejected():
    plan = ["000000000", "000000001", "000000002"]
    assert coverage_problems(plan, ["000000000", "000000001_r01"], ["000000001", "000000002"], [], dropped=1) == []
    twice = coverage_problems(plan, ["000000000", "000000000_r01", "000000001"], ["000000002"], [])
    assert any("more than one sample" in p for p in twice)
    lost = coverage_problems(plan, ["000000000"], ["000000001"], [])
    assert any("no sample, reject or failure" in p and "000000002" in p for p in lost)
    assert any("not in the plan" in p for p in coverage_problems(plan, ["000000007_r01"], plan, []))
    assert any("says 2" in p for p in coverage_problems(plan, ["000000000", "000000001_r01"], ["000000002"], [], dropped=2))


def test_the_estimator_weights_are_part_of_the_run(tmp_path, monkeypatch):
    """Other weights under the same estimator names are another run (the lock records their sha256), and the
    driver's resolved synthface weights travel to the actors in the settings."""
    import hashlib
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from facegen.runner.balance import _load
    from facegen.synthface.estimator import ESTIMATOR_ENV, INFO_FILE, shipped_weights_path

    path = write_manifest(tmp_path)
    monkeypatch.delenv(ESTIMATOR_ENV, raising=False)
    _, _, _, lock, settings = _load(path)
    shipped = shipped_weights_path()
    assert settings.synthface_weights == str(shipped.resolve())
    recorded = lock.manifest["verify"]["estimator_weights"]
    assert recorded["emotion"] == [{"file": shipped.name, "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest()}]

    state = load_file(str(shipped))
    state["out.bias"] = state["out.bias"] + torch.ones_like(state["out.bias"])
    other = tmp_path / "other" / "estimator.safetensors"
    other.parent.mkdir()
    save_file(state, str(other))
    shutil.copyfile(shipped.with_name(INFO_FILE), other.with_name(INFO_FILE))
    monkeypatch.setenv(ESTIMATOR_ENV, str(other))
    _, _, _, other_lock, other_settings = _load(path)
    assert other_settings.synthface_weights == str(other.resolve())
    assert other_lock.fingerprint != lock.fingerprint

    monkeypatch.delenv(ESTIMATOR_ENV)
    assert _load(path)[3].fingerprint == lock.fingerprint  # the same weights again: the same run


def test_an_unreadable_synthface_estimator_stops_balance_before_anything_is_written(tmp_path, monkeypatch):
    from facegen.errors import FacegenError
    from facegen.synthface.estimator import ESTIMATOR_ENV

    from .conftest import balance_in_process

    broken = tmp_path / "estimator.safetensors"
    broken.write_bytes(b"junk")
    monkeypatch.setenv(ESTIMATOR_ENV, str(broken))
    with pytest.raises(FacegenError, match="not a synthface estimator") as exc:
        balance_in_process(write_manifest(tmp_path), tmp_path / "out")
    assert str(broken) in str(exc.value)
    assert not (tmp_path / "out").exists()
