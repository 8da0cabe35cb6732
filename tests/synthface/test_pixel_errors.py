"""Bad input around the pixel-space synthface model: one line naming the field, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import yaml

from facegen.cli.main import main


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    out = tmp_path_factory.mktemp("px") / "data"
    assert main(["synthface", "render", "--n", "8", "--identities", "2", "--workers", "0", "--out", str(out)]) == 0
    return out


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_unknown_autoencoder_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["synthface", "init-model", "--autoencoder", "kl8", "--out", str(tmp_path / "m")]) == 2
    line = _one_line(capsys)
    assert "--autoencoder" in line and "resample2" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("changes", "refiner", "says"),
    [({"decoder": {"block_out_channels": [32, 64], "layers_per_block": 1}}, 32, "decoder"),
     ({"new_autoencoder": {"block_out_channels": [32, 64], "layers_per_block": 1}}, 32, "new_autoencoder"),
     ({}, 0, "nothing to train")],
)
def test_train_vae_on_a_resample_model_refuses_what_cannot_work(renders, tmp_path, capsys, changes, refiner, says):
    model = tmp_path / "init"
    assert main(["synthface", "init-model", "--autoencoder", "resample2", "--out", str(model)]) == 0
    if not refiner:  # a ResampleAutoencoder without a refiner (possible in a hand-made folder)
        cfg_file = model / "vae" / "config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "refiner_channels": 0}))
    capsys.readouterr()
    config = tmp_path / "vae.yaml"
    config.write_text(yaml.safe_dump({"stage": "vae", "data": str(renders), "model": str(model),
                                      "output": str(tmp_path / "out"), "steps": 1, "batch_size": 2, **changes}))
    assert main(["train", "vae", "--config", str(config)]) == 2
    assert says in _one_line(capsys)
    assert not (tmp_path / "out").exists()
