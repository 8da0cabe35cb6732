"""`facegen generate` is a thin layer over `facegen.runner.quicklook.generate_grid` (tiny model, real pipeline)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.io import Location
from facegen.runner.quicklook import emotion_vector, generate_grid, id_embeddings


def test_library_grid_equals_the_cli_grid_and_writes_urls(tiny_model_dir: Path, tmp_path: Path, capsys):
    url = f"memory://facegen-look-{uuid.uuid4().hex[:8]}/grids/g.png"
    look = generate_grid(tiny_model_dir, landmarks="template", yaw=20, emotion="happy", num_images=2, steps=2, out=url, progress=False)
    assert look.grid.shape == (64, 64 * 3, 3) and look.images.shape == (2, 64, 64, 3)
    assert [s["seed"] for s in look.settings] == [0, 1] and look.path == url
    root = Location(url.rsplit("/", 1)[0])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(root.read_bytes("g.png")))), look.grid)
    root.remove_tree("")

    out = tmp_path / "cli.png"
    args = ["generate", "--model", str(tiny_model_dir), "--landmarks", "template", "--yaw", "20", "--emotion", "happy", "-n", "2", "--steps", "2", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), look.grid)


def test_condition_parsing_errors_name_the_option(tmp_path: Path):
    with pytest.raises(FacegenError, match="--emotion"):
        emotion_vector("ecstatic")
    with pytest.raises(FacegenError, match="10 numbers"):
        emotion_vector("1,2,3")
    assert emotion_vector("happy").shape == (1, 10)
    emb = id_embeddings("random", 3, seed=1)
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1)
    np.save(tmp_path / "e.npy", np.ones(512, np.float32))
    assert id_embeddings(str(tmp_path / "e.npy"), 2, 0).shape == (2, 512)
    with pytest.raises(FacegenError, match="--out"):
        generate_grid(tmp_path, out=tmp_path / "grid.jpg")
