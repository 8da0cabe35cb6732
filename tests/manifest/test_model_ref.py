"""resolve_model_dir: `tiny` is built once into the cache; folder paths are checked with file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.manifest import load_manifest, resolve_model_dir


def test_model_folder_errors_name_field_and_line(tmp_path: Path, write_manifest, manifest_text):
    path = write_manifest(manifest_text({3: "model: ../no/such/model"}))
    m = load_manifest(path)  # planning does not need the model: only resolving checks it
    assert Path(m.model) == (tmp_path / "../no/such/model").resolve()
    with pytest.raises(FacegenError, match=r"m\.yaml:3: model: model folder .* does not exist"):
        resolve_model_dir(m)
    (tmp_path / "plain").mkdir()
    m = load_manifest(write_manifest(manifest_text({3: "model: plain"})))
    with pytest.raises(FacegenError, match="no facegen.json"):
        resolve_model_dir(m)


def test_model_folder_path_resolves(tmp_path: Path, write_manifest, manifest_text):
    (tmp_path / "mdl").mkdir()
    (tmp_path / "mdl" / "facegen.json").write_text("{}")
    m = load_manifest(write_manifest(manifest_text({3: "model: mdl"})))
    assert resolve_model_dir(m) == (tmp_path / "mdl").resolve()


@pytest.mark.slow
def test_tiny_preset_is_built_once_into_the_cache(tmp_path: Path, monkeypatch, write_manifest, manifest_text):
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "cache"))
    m = load_manifest(write_manifest(manifest_text()))
    first = resolve_model_dir(m)
    assert first == tmp_path / "cache" / "models" / "tiny-v1"
    assert (first / "facegen.json").is_file()
    stamp = (first / "facegen.json").stat().st_mtime_ns
    assert resolve_model_dir(m) == first
    assert (first / "facegen.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not list(first.parent.glob(".*tmp"))


def test_plan_does_not_need_the_model(tmp_path: Path, write_manifest, manifest_text):
    path = write_manifest(manifest_text({3: "model: ../absent"}))
    assert main(["plan", "--manifest", str(path), "--out", str(tmp_path / "out"), "--no-plot"]) == 0
