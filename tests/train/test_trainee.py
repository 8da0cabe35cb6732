"""Per-stage trainable parameters (by name) and where the AD-loss gradient goes, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from facegen.model.attention import cross_attention_layers
from facegen.model.loading import load_components
from facegen.train.config import stage_config_from_dict
from facegen.train.losses import SETTING_NAMES, setting_counts
from facegen.train.loop import micro_switches, step_generator
from facegen.train.trainee import StepInputs, Trainee


def _expected_names(components, stage):
    lmk = {f"landmark.{n}" for n, _ in components.landmark.named_parameters()}
    emo = {f"emotion.{n}" for n, _ in components.emotion.named_parameters()}
    enc = {f"identity_encoder.text_encoder.{n}" for n, _ in components.text_encoder.named_parameters()}
    return {"pretrain-lmk": lmk, "pretrain-emo": emo, "joint": lmk | emo | enc}[stage]


@pytest.mark.parametrize("stage", ["pretrain-lmk", "pretrain-emo", "joint"])
def test_trainable_parameter_names(tiny_model_dir, stage):
    components = load_components(tiny_model_dir)
    layers = [layer.name for layer in cross_attention_layers(components.unet)]
    trainee = Trainee(components, stage)
    trainable = {n for n, p in trainee.named_parameters() if p.requires_grad}
    assert trainable == _expected_names(components, stage)
    # the per-layer K/V of the stage's branch(es) are in, one pair per cross-attention layer
    branches = {"pretrain-lmk": ["landmark"], "pretrain-emo": ["emotion"], "joint": ["landmark", "emotion"]}[stage]
    for branch in branches:
        for i in range(len(layers)):
            assert {f"{branch}.kv.{i}.to_k.weight", f"{branch}.kv.{i}.to_v.weight"} <= trainable
    assert not any(n.startswith(("unet.", "vae.")) for n in trainable)
    token_embedding = [n for n in trainable if n.startswith("identity_encoder.") and n.endswith("token_embedding.weight")]
    assert len(token_embedding) == (stage == "joint")
    assert set(trainee.trainable_state_dict()) == trainable
    assert all(not p.requires_grad for p in components.unet.parameters())


def _joint_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    switches = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]] * 2, dtype=torch.float32)
    masks = torch.zeros(8, 64, 64)
    masks[:, 8:56, 12:52] = 1
    emb = torch.nn.functional.normalize(torch.randn(2, 512, generator=g), dim=1)
    return StepInputs(
        images=(torch.rand(2, 3, 64, 64, generator=g) * 2 - 1).repeat_interleave(4, 0),
        id_embeds=emb.repeat_interleave(4, 0),
        landmark_images=torch.rand(2, 3, 64, 64, generator=g).repeat_interleave(4, 0),
        emotions=torch.rand(2, 10, generator=g).repeat_interleave(4, 0),
        face_masks=masks,
        switches=switches,
        groups=torch.arange(2).repeat_interleave(4),
    )


def test_ad_loss_gradient_reaches_only_trainable_parts(tiny_model_dir):
    components = load_components(tiny_model_dir)
    trainee = Trainee(components, "joint", lambda_ad=1.0)
    out = trainee(_joint_inputs(), torch.Generator().manual_seed(0))
    assert out["ad_loss"] > 0
    params = dict(trainee.named_parameters())
    ad = out["loss"] - out["diffusion_loss"]  # lambda_AD * L_AD with the graph kept
    ad.backward()
    for name, p in params.items():
        if not p.requires_grad:
            assert p.grad is None, name
    touched = {name.split(".")[0] for name, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {"landmark", "emotion", "identity_encoder"}
    for i in range(len(components.landmark.kv)):
        assert params[f"landmark.kv.{i}.to_v.weight"].grad.abs().sum() > 0
        assert params[f"emotion.kv.{i}.to_k.weight"].grad.abs().sum() > 0


def test_joint_with_a_frozen_identity_encoder_trains_only_the_control_modules(tiny_model_dir):
    """`encoder_lr: 0` (train_identity_encoder=False): no gradient and no checkpoint entry for the encoder."""
    components = load_components(tiny_model_dir)
    trainee = Trainee(components, "joint", lambda_ad=1.0, train_identity_encoder=False)
    trainable = {n for n, p in trainee.named_parameters() if p.requires_grad}
    expected = _expected_names(components, "joint")
    assert trainable == {n for n in expected if not n.startswith("identity_encoder.")}
    assert set(trainee.trainable_state_dict()) == trainable
    out = trainee(_joint_inputs(), torch.Generator().manual_seed(0))
    out["loss"].backward()
    touched = {n.split(".")[0] for n, p in trainee.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {"landmark", "emotion"}
    assert not trainee.identity_encoder.training


def test_pretrain_stages_switch_only_their_branch(tiny_model_dir):
    components = load_components(tiny_model_dir)
    inputs = _joint_inputs()
    for stage, branch in (("pretrain-lmk", "landmark"), ("pretrain-emo", "emotion")):
        trainee = Trainee(components, stage)
        cfg = stage_config_from_dict({"data": "d", "model": "m", "output": "o", "steps": 1, "batch_size": 8}, stage)
        inputs.switches = micro_switches(cfg, torch.Generator().manual_seed(0))
        inputs.groups = torch.arange(8)
        trainee.zero_grad()
        out = trainee(inputs, torch.Generator().manual_seed(0))
        assert out["ad_loss"] == 0
        out["loss"].backward()
        with_grad = {n.split(".")[0] for n, p in trainee.named_parameters() if p.grad is not None}
        assert with_grad == {branch}


def test_logged_switch_settings_have_equal_frequencies():
    """The joint loop's per-micro-step switch draws (as logged) hit the four sets equally often."""
    cfg = stage_config_from_dict({"data": "d", "model": "m", "output": "o", "steps": 1, "batch_size": 16}, "joint")
    totals = dict.fromkeys(SETTING_NAMES, 0)
    batches_with_all = 0
    for step in range(1, 301):
        sw = micro_switches(cfg, step_generator(cfg.seed, step, 0, 0))
        counts = setting_counts(sw)
        batches_with_all += all(counts.values())
        for k, v in counts.items():
            totals[k] += v
    expected = 300 * 16 / 4
    chi2 = sum((v - expected) ** 2 / expected for v in totals.values())
    assert chi2 < 16.27, totals  # chi-square, 3 dof, p = 0.001
    assert batches_with_all > 200  # P(all four in a batch of 16) ~ 0.96
    # different steps draw different settings; the same step the same ones (resumable)
    a = micro_switches(cfg, step_generator(0, 5, 0, 0))
    assert torch.equal(a, micro_switches(cfg, step_generator(0, 5, 0, 0)))
    assert not torch.equal(a, micro_switches(cfg, step_generator(0, 6, 0, 0)))


def test_min_snr_weighting_against_a_hand_computed_reference(tiny_model_dir):
    """snr_gamma weights each sample's MSE by min(SNR_t, gamma) / SNR_t; without it, eq. 4's plain MSE."""
    components = load_components(tiny_model_dir)
    plain, weighted = Trainee(components, "base"), Trainee(components, "base", snr_gamma=5.0)
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    timesteps = torch.tensor([0, 50, 400, 999])
    assert torch.allclose(plain.denoising_loss(pred, target, timesteps), ((pred - target) ** 2).mean())
    alpha_bar = plain.noise_scheduler.alphas_cumprod
    expected = 0.0
    for i, t in enumerate(timesteps.tolist()):
        snr = float(alpha_bar[t] / (1 - alpha_bar[t]))
        expected += min(snr, 5.0) / snr * float(((pred[i] - target[i]) ** 2).mean())
    assert weighted.denoising_loss(pred, target, timesteps).item() == pytest.approx(expected / 4, rel=1e-5)
    # high-noise samples (SNR < gamma) keep weight 1; low-noise ones are down-weighted
    assert weighted.denoising_loss(pred[3:], target[3:], timesteps[3:]).item() == pytest.approx(
        plain.denoising_loss(pred[3:], target[3:], timesteps[3:]).item(), rel=1e-5)
    assert weighted.denoising_loss(pred[:1], target[:1], timesteps[:1]) < plain.denoising_loss(pred[:1], target[:1], timesteps[:1])


def test_x0_weighting_against_a_hand_computed_reference(tiny_model_dir):
    """x0_weighting weights each sample's epsilon MSE by 1/SNR_t, normalised to mean 1 over the batch:
    the clean-latent error |x0 - x0_hat|^2 = |eps - eps_hat|^2 / SNR_t, up to the batch's common factor."""
    components = load_components(tiny_model_dir)
    trainee = Trainee(components, "pretrain-lmk", x0_weighting=True)
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    timesteps = torch.tensor([10, 300, 700, 990])
    alpha_bar = trainee.noise_scheduler.alphas_cumprod
    inv_snr = [float((1 - alpha_bar[t]) / alpha_bar[t]) for t in timesteps.tolist()]
    mean_w = sum(inv_snr) / 4
    expected = sum(w / mean_w * float(((pred[i] - target[i]) ** 2).mean()) for i, w in enumerate(inv_snr)) / 4
    assert trainee.denoising_loss(pred, target, timesteps).item() == pytest.approx(expected, rel=1e-5)
    # the noisiest sample dominates: its error alone moves the loss far more than the cleanest one's
    bumped_high, bumped_low = pred.clone(), pred.clone()
    bumped_high[3] += 1.0
    bumped_low[0] += 1.0
    base = trainee.denoising_loss(pred, target, timesteps)
    assert trainee.denoising_loss(bumped_high, target, timesteps) - base > 100 * (
        trainee.denoising_loss(bumped_low, target, timesteps) - base)
    # with a cap, 1/SNR is clipped before normalising
    capped = Trainee(components, "pretrain-lmk", x0_weighting=True, x0_weight_cap=2.0)
    clipped = [min(w, 2.0) for w in inv_snr]
    expected = sum(w / (sum(clipped) / 4) * float(((pred[i] - target[i]) ** 2).mean()) for i, w in enumerate(clipped)) / 4
    assert capped.denoising_loss(pred, target, timesteps).item() == pytest.approx(expected, rel=1e-5)


def test_timestep_range_limits_the_drawn_timesteps(tiny_model_dir):
    components = load_components(tiny_model_dir)
    full, high = Trainee(components, "pretrain-lmk"), Trainee(components, "pretrain-lmk", timestep_range=(0.7, 1.0))
    images = torch.rand(64, 3, 64, 64) * 2 - 1
    batch = StepInputs(images, torch.randn(64, 512), torch.rand(64, 3, 64, 64), torch.rand(64, 10),
                       torch.ones(64, 64, 64), torch.ones(64, 2), torch.arange(64))
    num_t = full.noise_scheduler.config.num_train_timesteps
    _, _, t_high = high.noised_latents(batch, torch.Generator().manual_seed(0))
    _, _, t_full = full.noised_latents(batch, torch.Generator().manual_seed(0))
    assert int(t_high.min()) >= round(0.7 * num_t) and int(t_high.max()) < num_t
    assert int(t_full.min()) < round(0.7 * num_t)  # 64 uniform draws: P(all >= 700) = 0.3^64


def test_background_weight_concentrates_the_loss_on_the_face(tiny_model_dir):
    """background_weight w: each sample's MSE is the mean over latent cells weighted 1 on the face mask
    (area-downsampled) and w off it; w = 1 is eq. 4 unchanged."""
    components = load_components(tiny_model_dir)
    plain, focused = Trainee(components, "pretrain-emo"), Trainee(components, "pretrain-emo", background_weight=0.25)
    masks = torch.zeros(2, 64, 64)
    masks[:, 16:48, 16:48] = 1.0  # the middle 4x4 of an 8x8 latent
    pred, target, t = torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8), torch.tensor([100, 600])
    pred[:, :, 0, 0] = 1.0  # an error in one background cell only
    assert plain.latent_weights(masks, pred) is None
    weights = focused.latent_weights(masks, pred)
    assert weights.shape == (2, 1, 8, 8) and float(weights[0, 0, 3, 3]) == 1.0 and float(weights[0, 0, 0, 0]) == 0.25
    total = 16 * 1.0 + 48 * 0.25
    expected = (4 * 0.25) / (4 * total)  # 4 channels: squared error 1 in one cell of each, weight 0.25
    assert focused.denoising_loss(pred, target, t, weights).item() == pytest.approx(expected, rel=1e-6)
    assert plain.denoising_loss(pred, target, t).item() == pytest.approx(4 / 256, rel=1e-6)


def test_decoder_only_vae_stage_trains_the_decoder_and_keeps_the_latent_space(tiny_model_dir):
    import torch.nn.functional as F

    from facegen.train.weights import apply_decoder

    components = load_components(tiny_model_dir)
    cfg = stage_config_from_dict(
        {"data": "d", "model": str(tiny_model_dir), "output": "o", "steps": 1, "batch_size": 2,
         "train_encoder": False, "reconstruction_loss": "l1", "decoder": {"block_out_channels": [32, 64, 64, 64]}},
        "vae",
    )
    apply_decoder(components, cfg)
    trainee = Trainee(components, "vae", train_encoder=False, reconstruction_loss="l1")
    trainable = {n for n, p in trainee.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("vae.decoder.", "vae.post_quant_conv.")) for n in trainable)
    assert not any(".condition_encoder." in n for n in trainable)  # the inpainting input is never used
    encoder_before = {n: p.clone() for n, p in components.vae.encoder.named_parameters()}
    decoder_before = {n: p.clone() for n, p in components.vae.decoder.named_parameters()}

    inputs = _joint_inputs()
    out = trainee(inputs, torch.Generator().manual_seed(5))
    # hand-computed: L1 of the decoded latent sample drawn with the same generator; no KL term
    with torch.no_grad():
        dist = components.vae.encode(inputs.images).latent_dist
        eps = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(5))
        expected = F.l1_loss(components.vae.decode(dist.mean + dist.std * eps).sample, inputs.images)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    optimizer = torch.optim.SGD([p for p in trainee.parameters() if p.requires_grad], lr=0.1)
    out["loss"].backward()
    optimizer.step()
    assert all(torch.equal(p, encoder_before[n]) for n, p in components.vae.encoder.named_parameters())
    assert any(not torch.equal(p, decoder_before[n]) for n, p in components.vae.decoder.named_parameters())


def test_vae_background_weight_concentrates_the_reconstruction_loss_on_the_face(tiny_model_dir):
    components = load_components(tiny_model_dir)
    inputs = _joint_inputs()
    plain = Trainee(components, "vae")(inputs, torch.Generator().manual_seed(1))
    trainee = Trainee(components, "vae", background_weight=0.0, reconstruction_loss="l1", train_encoder=False)
    face_only = trainee(inputs, torch.Generator().manual_seed(1))
    with torch.no_grad():
        dist = components.vae.encode(inputs.images).latent_dist
        eps = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(1))
        err = (components.vae.decode(dist.mean + dist.std * eps).sample - inputs.images).float()
    mask = inputs.face_masks[:, None].expand_as(err).bool()
    assert face_only["loss"].item() == pytest.approx(err.abs()[mask].mean().item(), rel=1e-5)
    assert plain["diffusion_loss"].item() == pytest.approx((err**2).mean().item(), rel=1e-5)
