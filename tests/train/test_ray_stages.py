"""The three stages as real Ray Train runs on the tiny model (CPU): loss goes down, export loads, resume works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facegen.train.config import stage_config_from_dict
from facegen.train.run import run_stage

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def tiny_config(stage: str, data: Path, model: Path, out: Path, **extra) -> dict:
    raw = {
        "data": str(data), "model": str(model), "output": str(out), "steps": 8, "batch_size": 4,
        "lr": 2e-3, "encoder_lr": 1e-4, "checkpoint_every": 8, "overfit_batches": 1, "warmup_steps": 0,
        "mixed_precision": "no", "ray": {"num_workers": 1, "cpus_per_worker": 1},
    }
    for key, value in extra.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in raw else value
    return raw


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stage_runs(tiny_model_dir, extracted_dir, ray_local, tmp_path_factory):
    """pretrain-lmk and pretrain-emo (1 worker), then joint from both exports (2 DDP workers)."""
    root = tmp_path_factory.mktemp("stages")
    runs = {}
    for stage in ("pretrain-lmk", "pretrain-emo"):
        cfg = stage_config_from_dict(tiny_config(stage, extracted_dir, tiny_model_dir, root / stage), stage)
        runs[stage] = (cfg, run_stage(cfg))
    raw = tiny_config(
        "joint", extracted_dir, tiny_model_dir, root / "joint",
        init_landmark=str(runs["pretrain-lmk"][1].model_dir), init_emotion=str(runs["pretrain-emo"][1].model_dir),
        ray={"num_workers": 2, "cpus_per_worker": 0.5}, mixed={"replicas": 4},
    )
    cfg = stage_config_from_dict(raw, "joint")
    runs["joint"] = (cfg, run_stage(cfg))
    return runs


@pytest.mark.parametrize("stage", ["pretrain-lmk", "pretrain-emo", "joint"])
def test_stage_run_decreases_diffusion_loss(stage_runs, stage):
    cfg, result = stage_runs[stage]
    rows = read_metrics(Path(cfg.output))
    assert [r["step"] for r in rows] == list(range(1, cfg.steps + 1))
    losses = [r["diffusion_loss"] for r in rows]
    # fixed batch, fixed noise/timesteps: the stage's trainable parts alone must fit it better
    assert losses[-1] < losses[0]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(r["images_per_s"] > 0 and r["lr"] == pytest.approx(cfg.lr) for r in rows)
    csv_lines = (Path(cfg.output) / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,loss,diffusion_loss,ad_loss,reward_loss,reward_emotion,reward_pose,reward_identity,lr,images_per_s") and len(csv_lines) == cfg.steps + 1
    assert result.final_metrics["step"] == cfg.steps and result.final_metrics["resumed_from"] == 0
    if stage == "joint":
        assert all(r["ad_loss"] > 0 for r in rows)
        for r in rows:  # per-batch switch settings are logged (rank 0's batch of 4)
            assert r["n_id"] + r["n_id_lmk"] + r["n_id_emo"] + r["n_id_lmk_emo"] == cfg.batch_size
        assert result.final_metrics["cursor"] == cfg.steps * cfg.items_per_batch * 2  # two workers
    else:
        assert all(r["ad_loss"] == 0 for r in rows)


def test_exports_hold_exactly_the_trained_parts(stage_runs, tiny_model_dir):
    from safetensors.torch import load_file

    def weights(model_dir, part):
        return load_file(str(Path(model_dir) / part / "diffusion_pytorch_model.safetensors"))

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    base = {p: weights(tiny_model_dir, p) for p in ("landmark", "emotion", "unet")}
    lmk = stage_runs["pretrain-lmk"][1].model_dir
    emo = stage_runs["pretrain-emo"][1].model_dir
    joint = stage_runs["joint"][1].model_dir
    assert not same(base["landmark"], weights(lmk, "landmark")) and same(base["emotion"], weights(lmk, "emotion"))
    assert same(base["landmark"], weights(emo, "landmark")) and not same(base["emotion"], weights(emo, "emotion"))
    for part in ("landmark", "emotion"):
        assert not same(weights(lmk if part == "landmark" else emo, part), weights(joint, part))
    for model_dir in (lmk, emo, joint):
        assert same(base["unet"], weights(model_dir, "unet"))
    from facegen.model.folder import read_model_info

    source = read_model_info(joint).source
    assert source["training"][-1]["stage"] == "joint" and source["training"][-1]["steps"] == 8


def test_joint_export_loads_in_pipeline_and_changes_output(stage_runs, tiny_model_dir, extracted_dir):
    from facegen.conditions.render import render_landmark_images
    from facegen.model.pipeline import FaceCrafterPipeline
    from facegen.train.data import load_labels

    labels = load_labels(extracted_dir)
    lm = labels.landmarks[:2]
    emb = torch.from_numpy(labels.embeddings[:2].copy())

    def generate(model_dir):
        pipe = FaceCrafterPipeline.from_pretrained(model_dir)
        size = pipe.landmark_image_size
        lmk = torch.from_numpy(render_landmark_images(lm, size).astype(np.float32) / 255).permute(0, 3, 1, 2)
        emotions = torch.tensor([[0.7, 0.4] + [0.02] * 8] * 2)
        return pipe(emb, lmk, emotions, seeds=[1, 2], num_inference_steps=2, scheduler="ddim", output_type="np").images

    before = (generate(tiny_model_dir) * 255).round()
    after = (generate(stage_runs["joint"][1].model_dir) * 255).round()
    assert before.shape == after.shape
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 0.5


def _kill_session(pid: int) -> None:
    """SIGKILL the process group we started, then any straggler of its session (by pid)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # session id
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_killed_joint_run_resumes_from_its_checkpoint(tiny_model_dir, extracted_dir, ray_local, tmp_path):
    out = tmp_path / "joint-resume"
    raw = tiny_config("joint", extracted_dir, tiny_model_dir, out, steps=40, checkpoint_every=3, overfit_batches=0)
    raw["stage"] = "joint"
    config_path = tmp_path / "joint.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    snapshot = out / "ray" / "joint" / "checkpoint_manager_snapshot.json"
    env = {**os.environ, "RAY_ADDRESS": ""}
    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegen.cli.main", "train", "joint", "--config", str(config_path), "--num-workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(tmp_path),
    )
    saved_step = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if snapshot.is_file():
                try:
                    state = json.loads(snapshot.read_text())
                except json.JSONDecodeError:
                    state = {}
                latest = state.get("latest_checkpoint_result") or {}
                if latest:
                    saved_step = int(latest["metrics"]["step"])
                    break
            time.sleep(0.2)
    finally:
        _kill_session(proc.pid)
        proc.wait(timeout=30)
        log.close()
    assert 0 < saved_step < 40, (tmp_path / "first.log").read_text()[-3000:]

    # same run name + storage path: resumes (model, optimiser, step, data position) and finishes
    cfg = stage_config_from_dict({k: v for k, v in raw.items() if k != "stage"}, "joint")
    result = run_stage(cfg)
    assert result.final_metrics["step"] == 40
    resumed = result.final_metrics["resumed_from"]
    assert resumed >= saved_step and resumed % 3 == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 41))  # no gap, no duplicate after the resume
    assert rows[-1]["cursor"] == 40 * cfg.items_per_batch


def test_joint_with_encoder_lr_zero_keeps_the_input_identity_encoder(stage_runs, tiny_model_dir, extracted_dir, tmp_path):
    """`encoder_lr: 0` freezes the CLIP ID encoder: the export's text_encoder/ is the input model's, byte for
    byte, while the control modules train; with `encoder_lr > 0` (the fixture's joint run) the encoder moves."""
    def files(model_dir):
        return {p.name: p.read_bytes() for p in (Path(model_dir) / "text_encoder").iterdir()}

    raw = tiny_config("joint", extracted_dir, tiny_model_dir, tmp_path / "joint", steps=2, checkpoint_every=1,
                      encoder_lr=0.0, mixed={"replicas": 4})
    cfg = stage_config_from_dict(raw, "joint")
    frozen = run_stage(cfg).model_dir
    kept = files(tiny_model_dir)  # the tiny model has no stored unconditional context; the stage captures it
    assert {k: v for k, v in files(frozen).items() if k in kept} == kept
    assert files(stage_runs["joint"][1].model_dir)["model.safetensors"] != files(tiny_model_dir)["model.safetensors"]
    from safetensors.torch import load_file

    before = load_file(str(Path(tiny_model_dir) / "landmark" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(Path(frozen) / "landmark" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_trainer_without_a_dashboard_has_no_placement_group_cleaner(tiny_model_dir, extracted_dir, ray_local, tmp_path):
    # Without a dashboard the cleaner polls a state API that is not there (a warning a second) or another
    # Ray instance's, where it takes the healthy controller for dead and removes the run's placement group.
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from facegen.ray_session import ray_has_dashboard
    from facegen.train.run import build_trainer

    assert not ray_has_dashboard()  # the test session's Ray, like facegen's private ones, has none
    cfg = stage_config_from_dict(tiny_config("pretrain-emo", extracted_dir, tiny_model_dir, tmp_path / "run"), "pretrain-emo")
    kinds = {}
    for has_dashboard in (None, True):  # None: ask the connected Ray
        callbacks = build_trainer(cfg, has_dashboard=has_dashboard)._create_default_callbacks()
        kinds[has_dashboard] = [type(cb) for cb in callbacks]
    assert PlacementGroupCleanerCallback not in kinds[None]
    assert PlacementGroupCleanerCallback in kinds[True]  # a Ray with a dashboard keeps Ray Train's defaults
    assert len(kinds[None]) == len(kinds[True]) - 1
