"""Stage configs: the shipped YAMLs validate; bad input is a one-line FacegenError; overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.errors import FacegenError
from facegen.train.config import load_stage_config, stage_config_from_dict

REPO = Path(__file__).resolve().parents[2]
BASE = {"data": "d", "model": "m", "output": "o", "steps": 10, "batch_size": 4}


@pytest.mark.parametrize("stage,file", [("pretrain-lmk", "pretrain_lmk.yaml"), ("pretrain-emo", "pretrain_emo.yaml"), ("joint", "joint.yaml")])
def test_shipped_configs_validate(stage, file):
    cfg = load_stage_config(REPO / "training" / file, stage)
    assert cfg.stage == stage
    assert cfg.effective_batch == 16 and cfg.mixed_precision == "bf16"  # the paper's batch size
    assert Path(cfg.data).is_absolute() and Path(cfg.storage_path).is_absolute()
    if stage == "joint":
        assert cfg.lambda_ad == pytest.approx(5e-4)
        assert cfg.replicas == 16 and cfg.items_per_batch == 1
        assert cfg.init_landmark and cfg.init_emotion


def test_tiny_cpu_config_serves_every_stage():
    for stage in ("pretrain-lmk", "pretrain-emo", "joint"):
        cfg = load_stage_config(REPO / "training" / "tiny_cpu.yaml", stage, {"steps": 3, "ray.num_workers": 2})
        assert cfg.stage == stage and cfg.steps == 3 and cfg.ray.num_workers == 2 and not cfg.ray.use_gpu


def test_yaml_bare_no_means_no_mixed_precision(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: d\nmodel: m\noutput: o\nsteps: 1\nbatch_size: 2\nmixed_precision: no\n")
    assert load_stage_config(path, "pretrain-lmk").mixed_precision == "no"


@pytest.mark.parametrize(
    "raw,needle",
    [
        ({**BASE, "steps": 0}, "'steps'"),
        ({**BASE, "lr": "fast"}, "'lr'"),
        ({**BASE, "mixed_precision": "fp8"}, "'mixed_precision'"),
        ({**BASE, "bogus": 1}, "'bogus'"),
        ({**BASE, "ray": {"num_workers": 0}}, "'ray.num_workers'"),
        ({**BASE, "batch_size": 6, "mixed": {"replicas": 4}}, "replicas"),
        ({**BASE, "run": {"name": "a/b"}}, "'run.name'"),
    ],
)
def test_bad_values_are_one_line_errors(raw, needle):
    with pytest.raises(FacegenError) as err:
        stage_config_from_dict(raw, "joint", source="joint.yaml")
    msg = str(err.value)
    assert "\n" not in msg and needle in msg and msg.startswith("joint.yaml")


def test_stage_mismatch_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FacegenError, match="'stage' is 'joint'"):
        stage_config_from_dict({**BASE, "stage": "joint"}, "pretrain-emo")
    with pytest.raises(FacegenError, match="not found"):
        load_stage_config(tmp_path / "none.yaml", "joint")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(FacegenError, match="not valid YAML at line"):
        load_stage_config(bad, "joint")


def test_overrides_and_derived_values(tmp_path):
    cfg = stage_config_from_dict(
        BASE, "joint", overrides={"ray.num_workers": 2, "run.storage_path": "st", "mixed.replicas": 2, "lr": None},
        base_dir=tmp_path,
    )
    assert cfg.ray.num_workers == 2 and cfg.lr == pytest.approx(1e-4)
    assert cfg.storage_path == str(tmp_path / "st") and cfg.run_name == "joint"
    assert cfg.replicas == 2 and cfg.items_per_batch == 2
    lmk = stage_config_from_dict(BASE, "pretrain-lmk")
    assert lmk.replicas == 1 and lmk.items_per_batch == 4
    assert stage_config_from_dict({**BASE, "run": {"storage_path": "s3://b/p"}}, "joint").storage_path == "s3://b/p"


def test_cli_reports_bad_config_and_missing_inputs_as_one_line(tmp_path, capsys):
    from facegen.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: d\nmodel: m\noutput: o\nsteps: -1\nbatch_size: 2\n")
    assert main(["train", "pretrain-lmk", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'steps'" in err and "\n" not in err
    good = tmp_path / "good.yaml"
    good.write_text(f"data: {tmp_path}/nodata\nmodel: {tmp_path}\noutput: {tmp_path}/out\nsteps: 1\nbatch_size: 2\n")
    assert main(["train", "joint", "--config", str(good), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "labels.parquet" in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing written before the inputs check out


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    from facegen.train.loop import learning_rate_factor

    cfg = stage_config_from_dict(
        {**BASE, "steps": 110, "warmup_steps": 10, "lr_schedule": "cosine", "min_lr_ratio": 0.1}, "base"
    )
    factors = [learning_rate_factor(cfg, s) for s in range(1, 111)]
    assert factors[4] == pytest.approx(0.5) and factors[9] == pytest.approx(1.0)  # linear warm-up
    assert factors[59] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert factors[-1] == pytest.approx(0.1)  # the floor at the last step
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # monotone after warm-up
    constant = stage_config_from_dict({**BASE, "steps": 110, "warmup_steps": 10}, "base")
    assert learning_rate_factor(constant, 110) == 1.0


@pytest.mark.parametrize("path", sorted((REPO / "training" / "synthface").rglob("*.yaml")), ids=lambda p: p.stem)
def test_synthface_recipe_configs_validate(path):
    raw = __import__("yaml").safe_load(path.read_text())
    cfg = load_stage_config(path, raw["stage"])
    assert cfg.ray.cpus_per_worker in (1, 2) and not cfg.ray.use_gpu  # 2 = a stage that runs alone
    if "round2" in path.parts:  # round 2 continues from round 1's preset, with a decaying lr
        assert cfg.lr_schedule == "cosine" and "round" in cfg.model


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"timestep_range": [0.8, 0.2]}, "timestep_range"),
        ({"timestep_range": [0.0, 1.5]}, "timestep_range"),
        ({"x0_weighting": True, "snr_gamma": 5.0}, "x0_weighting and snr_gamma"),
        ({"x0_weight_cap": 20.0}, "x0_weight_cap"),
        ({"train_encoder": False}, "train_encoder applies to the autoencoder"),
        ({"reconstruction_loss": "l1"}, "reconstruction_loss applies to the autoencoder"),
        ({"decoder": {"block_out_channels": [64, 64]}}, "decoder applies to the autoencoder"),
    ],
)
def test_loss_options_are_checked(tmp_path, extra, message):
    with pytest.raises(FacegenError, match=message):
        stage_config_from_dict({**BASE, **extra}, "pretrain-lmk")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"decoder": {"block_out_channels": []}}, "decoder.block_out_channels"),
        ({"decoder": {"block_out_channels": [64, 0]}}, "decoder.block_out_channels"),
        ({"decoder": {"block_out_channels": [64], "layers": 2}}, "decoder.layers"),
        ({"reconstruction_loss": "l2"}, "reconstruction_loss"),
        ({"new_autoencoder": {"block_out_channels": [64]}, "train_encoder": False}, "new_autoencoder trains"),
        ({"new_autoencoder": {"block_out_channels": [64]}, "decoder": {"block_out_channels": [64]}}, "new_autoencoder"),
    ],
)
def test_vae_decoder_options_are_checked(extra, message):
    with pytest.raises(FacegenError, match=message):
        stage_config_from_dict({**BASE, **extra}, "vae")
    ok = stage_config_from_dict({**BASE, "train_encoder": False, "decoder": {"block_out_channels": [64, 128]}}, "vae")
    assert ok.decoder.block_out_channels == [64, 128] and ok.decoder.layers_per_block == 1


@pytest.mark.parametrize(
    ("shape", "needle"),
    [("decoder: {block_out_channels: [64, 64]}", "decoder.block_out_channels: needs 4 widths"),
     ("new_autoencoder: {block_out_channels: [48, 48, 64, 64]}", "new_autoencoder.block_out_channels: every width")],
)
def test_cli_rejects_autoencoder_widths_before_ray_starts(tmp_path, capsys, tiny_model_dir, extracted_dir, shape, needle):
    from facegen.cli.main import main

    cfg = tmp_path / "vae.yaml"
    extra = "train_encoder: false\n" if shape.startswith("decoder") else ""
    cfg.write_text(f"data: {extracted_dir}\nmodel: {tiny_model_dir}\noutput: {tmp_path}/out\nsteps: 1\nbatch_size: 2\n"
                   f"{extra}{shape}\n")
    assert main(["train", "vae", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing written, no Ray run started
