"""`facegen synthface train-estimator` end to end on tiny renders: several training folders, both stems,
the soft emotion target, resume, and the $FACEGEN_SYNTHFACE_ESTIMATOR override that `verify` reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.synthface.estimator import (
    ESTIMATOR_ENV,
    INFO_FILE,
    WEIGHTS_FILE,
    SynthfaceEstimator,
    configured_weights_path,
    load_estimator,
    shipped_weights_path,
    targets_from_labels,
)
from facegen.synthface.train_estimator import load_rendered


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    root = tmp_path_factory.mktemp("renders")
    for name, extra in [("a", []), ("b", ["--seed", "3", "--identity-start", "500"]), ("held", ["--heldout"])]:
        assert main(["synthface", "render", "--n", "48", "--identities", "6", "--workers", "0",
                     "--images-per-shard", "24", "--out", str(root / name), *extra]) == 0
    return root


def test_full_stem_keeps_full_resolution_before_pooling():
    import torch

    strided, full = SynthfaceEstimator(8, "strided"), SynthfaceEstimator(8, "full")
    x = torch.rand(2, 3, 64, 64)
    assert strided.features[0](x).shape[-1] == 32
    assert full.features[0](x).shape[-1] == 64 and full.features[:6](x).shape[-1] == 32
    assert set(strided(x)) == set(full(x))
    with pytest.raises(ValueError, match="stem"):
        SynthfaceEstimator(8, "wide")


def test_train_on_two_folders_resume_and_select_by_env(renders, tmp_path, monkeypatch, capsys):
    out = tmp_path / "est"
    args = ["synthface", "train-estimator", "--train", str(renders / "a"), "--train", str(renders / "b"),
            "--heldout", str(renders / "held"), "--out", str(out), "--batch-size", "8", "--width", "8",
            "--stem", "full", "--soft-emotion"]
    assert main([*args, "--steps", "4"]) == 0
    info = json.loads((out / INFO_FILE).read_text())
    assert info["stem"] == "full" and info["width"] == 8 and info["soft_emotion"] is True
    assert info["train_data"] == [str(renders / "a"), str(renders / "b")]
    assert info["eval_metrics"]["n"] == 48

    capsys.readouterr()
    assert main([*args, "--steps", "6"]) == 0
    assert "resuming estimator training at step 4" in capsys.readouterr().out
    assert json.loads((out / INFO_FILE).read_text())["steps"] == 6

    images, _ = load_rendered(renders / "held")
    direct = load_estimator(str(out / WEIGHTS_FILE)).measure(images[:4])
    monkeypatch.setenv(ESTIMATOR_ENV, str(out / WEIGHTS_FILE))
    assert configured_weights_path() == out / WEIGHTS_FILE
    via_env = load_estimator().measure(images[:4])
    np.testing.assert_array_equal(direct.emotion_probs, via_env.emotion_probs)
    monkeypatch.delenv(ESTIMATOR_ENV)
    assert configured_weights_path() == shipped_weights_path()
    shipped = load_estimator().measure(images[:4])
    assert not np.array_equal(shipped.emotion_probs, via_env.emotion_probs)


def test_soft_targets_are_the_true_posterior(renders):
    _, table = load_rendered(renders / "a")
    t = targets_from_labels(table)
    assert t.emotion_probs is not None and t.emotion_probs.shape == (48, 8)
    np.testing.assert_allclose(t.emotion_probs.sum(1).numpy(), 1.0, atol=1e-5)
    part = t.take(np.array([0, 2]))
    assert part.emotion_probs.shape == (2, 8) and part.pose.shape == (2, 3)


def test_bad_stem_and_missing_env_file_are_one_line_errors(renders, tmp_path, monkeypatch, capsys):
    capsys.readouterr()
    assert main(["synthface", "train-estimator", "--train", str(renders / "a"), "--heldout",
                 str(renders / "held"), "--out", str(tmp_path / "x"), "--stem", "wide"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--stem" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert main(["synthface", "train-estimator", "--train", str(renders / "a"), "--heldout",
                 str(renders / "held"), "--out", str(tmp_path / "x"), "--width", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --width:") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()

    corrupt = tmp_path / "corrupt" / "estimator.safetensors"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not safetensors")
    with pytest.raises(FacegenError, match="not a synthface estimator") as exc:
        load_estimator(str(corrupt))
    assert str(corrupt) in str(exc.value)

    monkeypatch.setenv(ESTIMATOR_ENV, str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(FacegenError, match=ESTIMATOR_ENV):
        load_estimator()
