"""SD1.5-size parameter budget (meta device) and the `facegen model` / `generate` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facegen.cli.main import main
from facegen.model.info import LMK_BUDGET, LMK_EMO_BUDGET, sd15_budget


def test_sd15_size_control_modules_fit_the_paper_budget(capsys):
    report = sd15_budget()
    assert report.cross_attention_layers == 16
    assert report.cross_attention_width_sum == 12_480
    with capsys.disabled():
        print(
            f"\nSD1.5-size control parameters: LMK {report.landmark_encoder:,} + K/V {report.landmark_kv:,} = "
            f"{report.landmark_total:,} (<= {LMK_BUDGET:,}); EMO {report.emotion_encoder:,} + K/V "
            f"{report.emotion_kv:,} = {report.emotion_total:,}; LMK+EMO {report.total:,} (<= {LMK_EMO_BUDGET:,})"
        )
    # K/V cost is exactly 2 x (sum of layer widths) x token width
    assert report.landmark_kv == 2 * 12_480 * 320
    assert report.emotion_kv == 2 * 12_480 * 192
    assert report.landmark_total <= LMK_BUDGET
    assert report.total <= LMK_EMO_BUDGET
    assert report.within_budget


def test_model_info_prints_counts(tiny_model_dir: Path, capsys):
    assert main(["model", "info", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert rows["landmark"][0] == "26,368" and rows["landmark"][2] == "10,240"  # tiny: 4 layers x 2 x 32 x (32|64)
    assert "unet" in rows and "emotion" in rows


def test_model_init_errors_are_one_line(tmp_path: Path, capsys):
    assert main(["model", "init", "--preset", "huge", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--preset" in err[0]
    assert main(["model", "init", "--arc2face", str(tmp_path), "--sd15", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arc2face/config.json" in err[0]
    assert main(["model", "info", str(tmp_path)]) == 2
    assert not (tmp_path / "m").exists()


def test_generate_writes_a_grid(tiny_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "grid.png"
    code = main(["generate", "--model", str(tiny_model_dir), "--landmarks", "template", "--yaw", "20",
                 "--emotion", "happy", "-n", "2", "--steps", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    grid = np.asarray(Image.open(out))
    assert grid.shape == (64, 64 * 3, 3)  # landmark condition + 2 images
    assert grid[:, :64].max() > 0  # the rendered landmarks are drawn
    assert main(["generate", "--model", str(tiny_model_dir), "--emotion", "ecstatic", "--out", str(out)]) == 2
    assert "--emotion" in capsys.readouterr().err


def test_generate_from_an_embedding_file(tiny_model_dir: Path, tmp_path: Path, capsys):
    emb = tmp_path / "id.npy"
    np.save(emb, np.random.default_rng(0).standard_normal(512).astype(np.float32))
    out = tmp_path / "one.png"
    assert main(["generate", "--model", str(tiny_model_dir), "--id-embedding", str(emb), "-n", "1", "--steps", "1",
                 "--scheduler", "ddim", "--out", str(out)]) == 0, capsys.readouterr().err
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)
    np.save(emb, np.zeros((2, 100), dtype=np.float32))
    assert main(["generate", "--model", str(tiny_model_dir), "--id-embedding", str(emb), "--out", str(out)]) == 2
    assert "(512,) or (N, 512)" in capsys.readouterr().err
