"""The consistency reward (`facegen.train.reward`): its x0 estimate, where its gradient goes, its config."""

from __future__ import annotations

import pytest
import torch

from facegen.errors import FacegenError
from facegen.model.loading import load_components
from facegen.synthface.estimator import shipped_weights_path
from facegen.train.config import RewardConfig, check_inputs, stage_config_from_dict
from facegen.train.trainee import StepInputs, Trainee


def _reward(**weights) -> RewardConfig:
    return RewardConfig(estimator=str(shipped_weights_path()), **{"emotion": 1.0, "pose": 1.0, "identity": 1.0, **weights})


def _inputs(switches: list[list[int]]) -> StepInputs:
    g = torch.Generator().manual_seed(0)
    n = len(switches)
    masks = torch.zeros(n, 64, 64)
    masks[:, 8:56, 12:52] = 1
    probs = torch.softmax(torch.randn(n, 8, generator=g), 1)
    return StepInputs(
        images=torch.rand(n, 3, 64, 64, generator=g) * 2 - 1,
        id_embeds=torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1),
        landmark_images=torch.rand(n, 3, 64, 64, generator=g),
        emotions=torch.cat([torch.rand(n, 2, generator=g), probs], 1),
        face_masks=masks,
        switches=torch.tensor(switches, dtype=torch.float32),
        groups=torch.arange(n),
        poses=torch.randn(n, 3, generator=g) * 20,
    )


def test_clean_prediction_inverts_the_forward_process(tiny_model_dir):
    trainee = Trainee(load_components(tiny_model_dir), "joint")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([10, 300, 600, 900])
    noisy = trainee.noise_scheduler.add_noise(x0, eps, t)
    assert torch.allclose(trainee.clean_prediction(noisy, eps, t), x0, atol=1e-4)
    assert not torch.allclose(trainee.clean_prediction(noisy, eps + 0.1, t), x0, atol=1e-2)


def test_reward_gradient_reaches_the_branch_it_rewards(tiny_model_dir):
    """Emotion reward on emo rows trains the emotion module; with no lmk/emo row and no identity weight,
    there is no reward (and no gradient into the control modules from it)."""
    trainee = Trainee(load_components(tiny_model_dir), "joint", lambda_ad=0.0, reward=_reward(pose=0.0, identity=0.0))
    out = trainee(_inputs([[0, 1], [0, 1]]), torch.Generator().manual_seed(0))
    assert out["reward_loss"] > 0 and "reward_emotion" in out
    (out["loss"] - out["diffusion_loss"]).backward()
    grads = {n: p.grad for n, p in trainee.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("emotion."))
    assert all(not p.requires_grad for p in trainee.reward.parameters())  # the instrument stays frozen

    trainee.zero_grad()
    out = trainee(_inputs([[0, 0], [0, 0]]), torch.Generator().manual_seed(0))
    assert float(out["reward_loss"]) == 0.0 and "reward_emotion" not in out


def test_reward_skips_rows_outside_its_timestep_range(tiny_model_dir):
    reward = _reward(timestep_range=(0.0, 0.01))
    trainee = Trainee(load_components(tiny_model_dir), "joint", lambda_ad=0.0, reward=reward, timestep_range=(0.5, 1.0))
    out = trainee(_inputs([[1, 1], [1, 1]]), torch.Generator().manual_seed(0))
    assert float(out["reward_loss"]) == 0.0


def test_pose_and_identity_terms_follow_their_targets(tiny_model_dir):
    trainee = Trainee(load_components(tiny_model_dir), "joint", lambda_ad=0.0, reward=_reward(emotion=0.0))
    batch = _inputs([[1, 0], [1, 0]])
    out = trainee(batch, torch.Generator().manual_seed(0))
    far = StepInputs(**{**batch.__dict__, "poses": batch.poses + 90.0, "id_embeds": -batch.id_embeds})
    out_far = trainee(far, torch.Generator().manual_seed(0))
    assert out_far["reward_pose"] > out["reward_pose"]
    assert out_far["reward_identity"] > out["reward_identity"]


def test_reward_config_is_checked_at_the_edge(tmp_path, tiny_model_dir):
    base = {"data": str(tmp_path), "model": str(tiny_model_dir), "output": str(tmp_path / "o"), "steps": 1, "batch_size": 2}
    with pytest.raises(FacegenError, match="reward applies to the diffusion stages"):
        stage_config_from_dict({**base, "reward": {"estimator": "x.safetensors"}}, "vae")
    with pytest.raises(FacegenError, match="every reward weight is 0"):
        stage_config_from_dict({**base, "reward": {"estimator": "x", "emotion": 0, "pose": 0}}, "joint")
    with pytest.raises(FacegenError, match="timestep_range"):
        stage_config_from_dict({**base, "reward": {"estimator": "x", "timestep_range": [0.5, 0.2]}}, "joint")
    cfg = stage_config_from_dict({**base, "reward": {"estimator": "rel/est.safetensors"}}, "joint", base_dir=tmp_path)
    assert cfg.reward.estimator == str(tmp_path / "rel" / "est.safetensors")
    with pytest.raises(FacegenError, match="reward.estimator"):
        check_inputs(cfg)



def test_train_cli_refuses_a_bad_reward_estimator_before_ray_starts(tmp_path, tiny_model_dir):
    """Missing or not-an-estimator file: exit 2, one line naming the file, no traceback, no output folder."""
    import subprocess
    import sys

    import yaml

    for name, content in (("missing.safetensors", None), ("junk.safetensors", b"not a safetensors file")):
        est = tmp_path / name
        if content is not None:
            est.write_bytes(content)
        cfg = {"data": str(tmp_path), "model": str(tiny_model_dir), "output": str(tmp_path / f"out_{name}"),
               "steps": 1, "batch_size": 2, "reward": {"estimator": str(est)}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run = subprocess.run([sys.executable, "-m", "facegen.cli.main", "train", "joint", "--config", str(path)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / f"out_{name}").exists()


def _estimator_without_reliability(folder) -> str:
    """The shipped estimator's weights and info, minus identity_reliability (an estimator trained before it existed)."""
    import json
    import shutil

    from facegen.synthface.estimator import INFO_FILE

    shipped = shipped_weights_path()
    bare = folder / shipped.name
    shutil.copy(shipped, bare)
    info = json.loads(shipped.with_name(INFO_FILE).read_text())
    info.pop("identity_reliability")
    bare.with_name(INFO_FILE).write_text(json.dumps(info))
    return str(bare)


def test_observable_identity_space_weights_the_features_a_face_shows(tmp_path):
    """Identity cosine in the observable space: a target that differs from the measurement only in features
    the estimator cannot read scores (near) 1 there but lower in the 512-d embedding; a target that differs
    in the features it reads scores lower in both. Weights without identity_reliability are refused."""
    import numpy as np

    from facegen.synthface.params import embedding_projection
    from facegen.train.reward import ConsistencyReward

    weights = str(shipped_weights_path())
    observable = ConsistencyReward(weights, emotion=0.0, pose=0.0, identity=1.0, identity_space="observable")
    embedding = ConsistencyReward(weights, emotion=0.0, pose=0.0, identity=1.0)
    reliability = observable.feature_weight ** 2
    blind = reliability < 0.15
    assert blind.any() and (~blind).any()

    g = torch.Generator().manual_seed(3)
    features = torch.randn(16, reliability.numel(), generator=g)
    projection = torch.tensor(embedding_projection(), dtype=torch.float32)
    unseen_change = features.clone()
    unseen_change[:, blind] = torch.randn(16, int(blind.sum()), generator=g) * 3
    seen_change = features.clone()
    seen_change[:, ~blind] = torch.randn(16, int((~blind).sum()), generator=g)

    def cos(reward, target_features):
        return reward.identity_cosine(features, torch.nn.functional.normalize(target_features @ projection, dim=1))

    assert cos(observable, features).min() > 0.999 and cos(embedding, features).min() > 0.999
    assert cos(observable, unseen_change).mean() > cos(embedding, unseen_change).mean() + 0.2
    assert cos(observable, unseen_change).mean() > cos(observable, seen_change).mean() + 0.3

    with pytest.raises(ValueError, match="identity_reliability"):
        ConsistencyReward(_estimator_without_reliability(tmp_path), emotion=0.0, pose=0.0, identity=1.0, identity_space="observable")


def test_observable_identity_reward_trains_and_is_checked_at_the_edge(tmp_path, tiny_model_dir):
    trainee = Trainee(load_components(tiny_model_dir), "joint", lambda_ad=0.0,
                      reward=_reward(emotion=0.0, pose=0.0, identity_space="observable"))
    batch = _inputs([[0, 0], [1, 1]])
    out = trainee(batch, torch.Generator().manual_seed(0))
    far = trainee(StepInputs(**{**batch.__dict__, "id_embeds": -batch.id_embeds}), torch.Generator().manual_seed(0))
    assert far["reward_identity"] > out["reward_identity"]
    (out["loss"] - out["diffusion_loss"]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in trainee.named_parameters() if p.requires_grad)

    (tmp_path / "data").mkdir()
    bare = _estimator_without_reliability(tmp_path)
    base = {"data": str(tmp_path / "data"), "model": str(tiny_model_dir), "output": str(tmp_path / "o"), "steps": 1,
            "batch_size": 2, "reward": {"estimator": bare, "identity": 1.0, "identity_space": "observable"}}
    with pytest.raises(FacegenError, match="identity_space"):
        check_inputs(stage_config_from_dict(base, "joint"))
    with pytest.raises(FacegenError, match="identity_space"):
        stage_config_from_dict({**base, "reward": {"estimator": bare, "identity_space": "pixels"}}, "joint")
