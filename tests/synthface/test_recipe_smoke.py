"""A few-step smoke of the synthface recipe (`make synthface-model`) through the product's own verbs:
render -> init-model -> train vae -> train base -> pretrain-lmk -> pretrain-emo -> joint, each a Ray
Train job, on 48 renders. The full build runs the same commands with more data and steps."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from facegen.cli.main import main
from facegen.synthface.estimator import shipped_weights_path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def facegen(ray_local, capsys):
    """`facegen ARGS...` through the CLI's own entry point, in this process: every command joins the session's
    local Ray (the policy for an initialised Ray) instead of starting and stopping one of its own, which was
    most of this smoke's time. Returns the exit code and what the command wrote to stderr."""

    def run(*args: str) -> SimpleNamespace:
        code = main(list(args))
        return SimpleNamespace(returncode=code, stderr=capsys.readouterr().err)

    return run


def stage_config(tmp: Path, name: str, **changes) -> Path:
    raw = yaml.safe_load((REPO / "training" / "synthface" / f"{name}.yaml").read_text())
    raw.update(data=str(tmp / "data"), steps=2, batch_size=4, checkpoint_every=2, warmup_steps=0, **changes)
    raw["ray"] = {"num_workers": 1, "use_gpu": False, "cpus_per_worker": 1}
    if "mixed" in raw:
        raw["mixed"] = {"replicas": 2}
    path = tmp / f"{name.replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_recipe_runs_end_to_end_on_a_few_steps(facegen, tmp_path):
    ok = facegen("synthface", "render", "--n", "48", "--identities", "8", "--workers", "0", "--out", str(tmp_path / "data"))
    assert ok.returncode == 0, ok.stderr
    ok = facegen("synthface", "init-model", "--out", str(tmp_path / "init"))
    assert ok.returncode == 0, ok.stderr
    stages = [
        ("vae", "vae", {"model": str(tmp_path / "init"), "output": str(tmp_path / "vae")}),
        ("base", "base", {"model": str(tmp_path / "vae" / "model"), "output": str(tmp_path / "base")}),
        ("pretrain-lmk", "pretrain_lmk", {"model": str(tmp_path / "base" / "model"), "output": str(tmp_path / "lmk")}),
        ("pretrain-emo", "pretrain_emo", {"model": str(tmp_path / "base" / "model"), "output": str(tmp_path / "emo")}),
        ("joint", "joint", {"model": str(tmp_path / "base" / "model"), "output": str(tmp_path / "joint"),
                            "init_landmark": str(tmp_path / "lmk" / "model"),
                            "init_emotion": str(tmp_path / "emo" / "model")}),
    ]
    for stage, name, changes in stages:
        run = facegen("train", stage, "--config", str(stage_config(tmp_path, name, **changes)))
        assert run.returncode == 0, f"{stage}: {run.stderr[-2000:]}"
        rows = [json.loads(line) for line in (Path(changes["output"]) / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
    # the VAE stage calibrated the latent scale; the base stage trained the UNet (weights changed)
    from facegen.model.loading import load_components

    vae = load_components(tmp_path / "vae" / "model").vae
    assert vae.config.scaling_factor != 1.0
    init = load_components(tmp_path / "init").unet.state_dict()
    base = load_components(tmp_path / "base" / "model").unet.state_dict()
    assert any((init[k] - base[k]).abs().max() > 0 for k in init)

    # a decoder-only vae stage on the finished model: wider decoder, same encoder, same UNet, same scale
    decoder_cfg = stage_config(
        tmp_path, "vae", model=str(tmp_path / "joint" / "model"), output=str(tmp_path / "decoder"),
        train_encoder=False, reconstruction_loss="l1", decoder={"block_out_channels": [32, 64, 64], "layers_per_block": 1},
    )
    run = facegen("train", "vae", "--config", str(decoder_cfg))
    assert run.returncode == 0, run.stderr[-2000:]
    before, after = load_components(tmp_path / "joint" / "model"), load_components(tmp_path / "decoder" / "model")
    assert type(after.vae).__name__ == "AsymmetricAutoencoderKL"
    assert after.vae.config.scaling_factor == before.vae.config.scaling_factor
    for name, value in before.vae.encoder.state_dict().items():
        assert torch.equal(after.vae.encoder.state_dict()[name], value), name
    unet = after.unet.state_dict()
    assert all(torch.equal(unet[k], v) for k, v in before.unet.state_dict().items())


def _reward_section() -> dict:
    return yaml.safe_load((REPO / "training" / "synthface" / "pixel" / "reward.yaml").read_text())["reward"]


def test_pixel_space_recipe_runs_end_to_end_and_generates(facegen, tmp_path):
    """The `--autoencoder resample2` variant: no KL autoencoder to train (latents are 32x32x3 pixels);
    base, then the decoder refiner alone (`train vae` with `train_encoder: false`); the latent scale and
    the UNet stay put, and the result generates 64-px images; then the joint stage with the consistency reward
    (round 3). (The other control stages do not depend on the autoencoder; the test above runs them.)"""
    ok = facegen("synthface", "render", "--n", "48", "--identities", "8", "--workers", "0", "--out", str(tmp_path / "data"))
    assert ok.returncode == 0, ok.stderr
    ok = facegen("synthface", "init-model", "--autoencoder", "resample2", "--out", str(tmp_path / "init"))
    assert ok.returncode == 0, ok.stderr
    stages = [
        ("base", "base", {"model": str(tmp_path / "init"), "output": str(tmp_path / "base")}),
        ("vae", "vae", {"model": str(tmp_path / "base" / "model"), "output": str(tmp_path / "refiner"),
                        "train_encoder": False, "reconstruction_loss": "l1"}),
        # the consistency-reward joint stage (round 3's config; the shipped estimator stands in for the reward one)
        ("joint", "pixel/reward", {"model": str(tmp_path / "refiner" / "model"), "output": str(tmp_path / "reward"),
                                   "reward": {**_reward_section(), "estimator": str(shipped_weights_path())}}),
    ]
    for stage, name, changes in stages:
        run = facegen("train", stage, "--config", str(stage_config(tmp_path, name, **changes)))
        assert run.returncode == 0, f"{stage}: {run.stderr[-2000:]}"
    rows = [json.loads(line) for line in (tmp_path / "reward" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["reward_loss"] > 0 for r in rows), rows

    from facegen.model.loading import load_components
    from facegen.model.resample import ResampleAutoencoder

    init, joint, refined = (load_components(tmp_path / p) for p in ("init", "base/model", "refiner/model"))
    assert isinstance(refined.vae, ResampleAutoencoder)
    assert refined.vae.config.scaling_factor == init.vae.config.scaling_factor
    assert init.unet.config.in_channels == 3 and init.unet.config.sample_size == 32
    unet = refined.unet.state_dict()
    assert all(torch.equal(unet[k], v) for k, v in joint.unet.state_dict().items())
    # the refiner trained (its zero-initialised last layer moved); the encoder is exact area downsampling
    last = [v for k, v in refined.vae.state_dict().items() if k.endswith("weight")][-1]
    assert last.abs().max() > 0
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = refined.vae.encode(x).latent_dist.sample()
    assert torch.allclose(z, torch.nn.functional.avg_pool2d(x, 2))

    out = tmp_path / "gen"
    manifest = tmp_path / "m.yaml"
    raw = yaml.safe_load((REPO / "manifests" / "demo.yaml").read_text())
    raw.update(model=str(tmp_path / "refiner" / "model"), images_per_identity=1)
    raw["identities"]["embeddings"] = str(REPO / "manifests" / "synthface_demo_identities.parquet")
    raw["targets"]["expression"]["exemplars"] = str(REPO / "manifests" / "synthface_exemplars.parquet")
    raw["sampler"].update(steps=2, batch_size=4)
    raw["output"]["samples_per_shard"] = 4
    manifest.write_text(yaml.safe_dump(raw))
    run = facegen("balance", "--manifest", str(manifest), "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    import pyarrow.parquet as pq

    assert pq.read_table(out / "labels.parquet").num_rows == 8
