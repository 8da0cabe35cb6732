"""The model as one training step sees it: which parts train per stage, and the loss of a batch.

Which parts train, which switches are on and which loss applies come from `facegen.train.stages`
(everything else frozen; ArcFace embeddings are precomputed):

- ``vae``: the autoencoder (``vae.*``), reconstruction + KL;
- ``base``: the UNet and the identity encoder's CLIP text transformer, ID condition only, with
  condition dropout (a sample's context becomes the empty prompt with probability ``uncond_prob``);
- ``pretrain-lmk`` / ``pretrain-emo``: one control module incl. its per-layer K/V;
- ``joint``: both control modules plus the identity encoder, with the AD loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from facegen.model.attention import record_attention
from facegen.model.loading import FaceCrafterComponents
from facegen.model.vae import ENCODER_PARTS
from facegen.train.losses import attention_disentanglement_loss
from facegen.train.reward import ConsistencyReward

from facegen.train.stages import STAGE_SPECS, stage_spec

#: Top-level submodule names of :class:`Trainee` trained in each stage.
TRAINABLE_PARTS: dict[str, tuple[str, ...]] = {name: spec.trainable for name, spec in STAGE_SPECS.items()}


@dataclass
class StepInputs:
    """One micro-batch on the device. Samples with the same `groups` value are replicas of one item
    (wherever they sit in the batch) and share latents, noise and timestep."""

    images: torch.Tensor  # (B, 3, R, R) in [-1, 1]
    id_embeds: torch.Tensor  # (B, 512)
    landmark_images: torch.Tensor  # (B, 3, S, S) in [0, 1]
    emotions: torch.Tensor  # (B, 10)
    face_masks: torch.Tensor  # (B, R, R) {0, 1}
    switches: torch.Tensor  # (B, 2): a_LMK, a_EMO
    groups: torch.Tensor  # (B,) item index
    poses: torch.Tensor | None = None  # (B, 3) target yaw, pitch, roll in degrees (the consistency reward's)


class Trainee(nn.Module):
    """Holds the model parts as submodules (so DDP sees them) and computes eqs. 4-5 for a batch."""

    def __init__(
        self,
        components: FaceCrafterComponents,
        stage: str,
        lambda_ad: float = 5e-4,
        *,
        uncond_prob: float = 0.1,
        kl_weight: float = 1e-4,
        snr_gamma: float | None = None,
        x0_weighting: bool = False,
        x0_weight_cap: float | None = None,
        background_weight: float = 1.0,
        timestep_range: tuple[float, float] = (0.0, 1.0),
        train_encoder: bool = True,
        reconstruction_loss: str = "mse",
        reward=None,
        train_identity_encoder: bool = True,
    ) -> None:
        super().__init__()
        # Control modules first: their parameters are reached through the UNet's processors too.
        self.landmark = components.landmark
        self.emotion = components.emotion
        self.identity_encoder = components.identity_encoder
        self.unet = components.unet
        self.vae = components.vae
        self.stage = stage
        self.spec = stage_spec(stage)
        self.lambda_ad = lambda_ad
        self.uncond_prob = uncond_prob
        self.kl_weight = kl_weight
        self.snr_gamma = snr_gamma
        self.x0_weighting = x0_weighting
        self.x0_weight_cap = x0_weight_cap
        self.background_weight = background_weight
        self.timestep_range = timestep_range
        self.train_encoder = train_encoder
        self.train_identity_encoder = train_identity_encoder
        self.reconstruction_loss = reconstruction_loss
        self.noise_scheduler = DDPMScheduler.from_config(components.scheduler_config)
        self.reward_range = (0.0, 1.0)
        self.reward: ConsistencyReward | None = None
        if reward is not None:  # a RewardConfig
            self.reward = ConsistencyReward(reward.estimator, emotion=reward.emotion, pose=reward.pose,
                                            identity=reward.identity, identity_space=reward.identity_space)
            self.reward_range = tuple(reward.timestep_range)
        self.latent_scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.set_trainable()
        if not self.spec.condition_dropout and self.identity_encoder.uncond_context is None:
            # eq. 6's unconditional context is the input model's, captured before any step (see stages.py)
            self.identity_encoder.capture_uncond()

    def prepare_export(self) -> None:
        """Before writing the trained model: a stage that trained the unconditional branch freezes it now."""
        if self.spec.condition_dropout:
            self.identity_encoder.capture_uncond()

    def set_trainable(self) -> None:
        """Freeze everything, then unfreeze exactly the stage's parts (and put them in train mode)."""
        self.requires_grad_(False)
        self.eval()
        for name in TRAINABLE_PARTS[self.stage]:
            part = getattr(self, name)
            part.requires_grad_(True)
            part.train()
        # the control modules are also reachable through the UNet's processors: keep them frozen
        # unless the stage trains them
        for name in ("landmark", "emotion"):
            if name not in TRAINABLE_PARTS[self.stage]:
                getattr(self, name).requires_grad_(False)
        if not self.train_identity_encoder:  # `encoder_lr: 0`: the encoder stays the input model's, bit for bit
            self.identity_encoder.requires_grad_(False)
            self.identity_encoder.eval()
        if self.spec.objective == "autoencoder":
            frozen = [] if self.train_encoder else list(ENCODER_PARTS)
            if getattr(self.vae.decoder, "condition_encoder", None) is not None:
                frozen.append("decoder.condition_encoder")  # AsymmetricAutoencoderKL's inpainting input: unused
            for path in frozen:
                if not _has_submodule(self.vae, path):
                    continue  # a ResampleAutoencoder's encoder has no parameters
                part = self.vae.get_submodule(path)
                part.requires_grad_(False)
                part.eval()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly the trainable parameters (what checkpoints store)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def forward(self, batch: StepInputs, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch; noise/timesteps drawn from `generator` (CPU) per item."""
        if self.spec.objective == "autoencoder":
            return self.autoencoder_losses(batch, generator)
        return self.diffusion_losses(batch, generator)

    def autoencoder_losses(self, batch: StepInputs, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """VAE stage: MSE (or L1) reconstruction, pixels off the face weighted by `background_weight`,
        + kl_weight * KL per latent element (only when the encoder trains: a frozen encoder's latent
        distribution is fixed)."""
        images = batch.images.to(self.vae.dtype)
        dist = self.vae.encode(images).latent_dist
        eps = torch.randn(dist.mean.shape, generator=generator).to(images.device, dist.mean.dtype)
        recon = self.vae.decode(dist.mean + dist.std * eps).sample
        err = recon.float() - images.float()
        err = err.abs() if self.reconstruction_loss == "l1" else err**2
        weights = self.latent_weights(batch.face_masks, err)  # pixel weights here: face vs background
        rec = err.mean() if weights is None else (err * weights).sum() / (weights.expand_as(err).sum())
        kl = dist.kl().float().mean() / dist.mean[0].numel()
        loss = rec + self.kl_weight * kl if self.train_encoder else rec
        return {"loss": loss, "diffusion_loss": rec.detach(), "ad_loss": kl.detach()}

    def diffusion_losses(self, batch: StepInputs, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Eq. 4 (+ lambda_AD * eq. 3 in the mixed-conditioning stage)."""
        noisy, target, timesteps = self.noised_latents(batch, generator)
        context = self.identity_context(batch, generator)
        kwargs = self.control_kwargs(batch)
        if self.spec.uses_ad_loss and self.lambda_ad > 0:
            with record_attention(self.unet) as recorded:
                pred = self.unet(noisy, timesteps, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
                features = dict(recorded)
            ad = attention_disentanglement_loss(features, batch.switches, batch.groups, batch.face_masks)
        else:
            pred = self.unet(noisy, timesteps, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
            ad = pred.new_zeros((), dtype=torch.float32)
        diffusion = self.denoising_loss(pred, target, timesteps, self.latent_weights(batch.face_masks, pred))
        loss = diffusion + self.lambda_ad * ad
        out = {"diffusion_loss": diffusion.detach(), "ad_loss": ad.detach()}
        if self.reward is not None:
            reward, parts = self.reward_loss(noisy, pred, timesteps, batch)
            loss = loss + reward
            out.update(reward_loss=reward.detach(), **{f"reward_{k}": v for k, v in parts.items()})
        return {"loss": loss, **out}

    def timestep_bounds(self, fractions: tuple[float, float]) -> tuple[int, int]:
        """Training timestep indices [low, high) (at least one) for a range of fractions of the schedule."""
        num_t = self.noise_scheduler.config.num_train_timesteps
        low, high = (round(f * num_t) for f in fractions)
        return low, max(high, low + 1)

    def clean_prediction(self, noisy: torch.Tensor, pred: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The one-step estimate of the clean latent, x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (or from v)."""
        abar = self.noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float().view(-1, 1, 1, 1)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            return abar.sqrt() * noisy.float() - (1 - abar).sqrt() * pred.float()
        return (noisy.float() - (1 - abar).sqrt() * pred.float()) / abar.sqrt()

    def reward_loss(
        self, noisy: torch.Tensor, pred: torch.Tensor, timesteps: torch.Tensor, batch: StepInputs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The consistency reward (`facegen.train.reward`) on the rows whose timestep is in the reward's range."""
        low, high = self.timestep_bounds(self.reward_range)
        rows = (timesteps >= low) & (timesteps < high)
        if not bool(rows.any()):
            return pred.float().sum() * 0.0, {}
        x0 = self.clean_prediction(noisy[rows], pred[rows], timesteps[rows])
        images = self.vae.decode((x0 / self.latent_scale).to(self.vae.dtype)).sample
        poses = batch.poses[rows] if batch.poses is not None else None
        return self.reward(images, batch.emotions[rows], poses, batch.id_embeds[rows], batch.switches[rows])

    def latent_weights(self, face_masks: torch.Tensor, pred: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, h, w) per-cell loss weights: 1 on the face, `background_weight` off it (None when 1)."""
        if self.background_weight == 1.0:
            return None
        cover = F.interpolate(face_masks[:, None].float(), size=pred.shape[-2:], mode="area")
        return self.background_weight + (1.0 - self.background_weight) * cover

    def denoising_loss(
        self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor, cell_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eq. 4's MSE; with `snr_gamma`, each sample weighted by min(SNR_t, gamma) / SNR_t (epsilon
        target) or / (SNR_t + 1) (v target): Min-SNR weighting (Hang et al., ICCV 2023), which stops the
        nearly noise-free timesteps from dominating the gradient and converges several times faster.
        With `x0_weighting`, by 1/SNR_t (optionally clipped), normalised to mean 1. `cell_weights`
        (B, 1, h, w) make each sample's MSE a weighted mean over latent cells."""
        squared = (pred.float() - target.float()) ** 2
        if cell_weights is None:
            per_sample = squared.flatten(1).mean(1)
        else:
            cell_weights = cell_weights.float().expand_as(squared)
            per_sample = (squared * cell_weights).flatten(1).sum(1) / cell_weights.flatten(1).sum(1)
        if self.snr_gamma is None and not self.x0_weighting:
            return per_sample.mean()
        alphas = self.noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
        snr = alphas / (1 - alphas)
        v_target = self.noise_scheduler.config.prediction_type == "v_prediction"
        if self.x0_weighting:
            # |x0 error|^2 = |eps error|^2 / SNR = |v error|^2 / (SNR + 1); normalised so the lr keeps its scale
            weight = 1 / (snr + 1) if v_target else 1 / snr
            if self.x0_weight_cap is not None:
                weight = torch.clamp(weight, max=self.x0_weight_cap)
            weight = weight / weight.mean()
        else:
            clipped = torch.clamp(snr, max=self.snr_gamma)
            weight = clipped / (snr + 1) if v_target else clipped / snr
        return (weight * per_sample).mean()

    def noised_latents(
        self, batch: StepInputs, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, target, t) per sample. Samples with the same `groups` value (the copies of one image, in
        any order) share the VAE latent sample, the noise and the timestep: draws are made once per
        group, in order of first appearance, and copied to every member."""
        device = batch.images.device
        groups = batch.groups.tolist()
        draw_of = {g: k for k, g in enumerate(dict.fromkeys(groups))}  # group -> its draw, by first appearance
        first = torch.tensor([groups.index(g) for g in draw_of], device=device)
        member_of = torch.tensor([draw_of[g] for g in groups], device=device)  # sample -> its group's draw
        items = batch.images[first]
        with torch.no_grad():
            dist = self.vae.encode(items.to(self.vae.dtype)).latent_dist
            eps = torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
            latents = (dist.mean + dist.std * eps) * self.latent_scale
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        low, high = self.timestep_bounds(self.timestep_range)
        timesteps = torch.randint(low, high, (latents.shape[0],), generator=generator).to(device)
        latents, noise, timesteps = (x[member_of] for x in (latents, noise, timesteps))
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            return noisy, self.noise_scheduler.get_velocity(latents, noise, timesteps), timesteps
        return noisy, noise, timesteps

    def identity_context(self, batch: StepInputs, generator: torch.Generator) -> torch.Tensor:
        """The ID context per sample; with condition dropout some become the (live, trained) empty prompt."""
        train_id = self.spec.trains_identity_encoder and self.train_identity_encoder
        with torch.set_grad_enabled(train_id and torch.is_grad_enabled()):
            context = self.identity_encoder(batch.id_embeds)
            if self.spec.condition_dropout and self.uncond_prob > 0:
                drop = torch.rand(context.shape[0], generator=generator) < self.uncond_prob
                if drop.any():
                    uncond = self.identity_encoder.encode_empty_prompt(int(drop.sum()))
                    context = context.clone()
                    context[drop.to(context.device)] = uncond.to(context.dtype)
        return context

    def control_kwargs(self, batch: StepInputs) -> dict[str, torch.Tensor]:
        """`cross_attention_kwargs` for the branches the stage switches on (eq. 1's a_LMK, a_EMO per sample)."""
        kwargs: dict[str, torch.Tensor] = {}
        if self.spec.branch_on(0):
            kwargs["lmk_tokens"] = self.landmark(batch.landmark_images)
            kwargs["lmk_scale"] = batch.switches[:, 0]
        if self.spec.branch_on(1):
            kwargs["emo_tokens"] = self.emotion(batch.emotions)
            kwargs["emo_scale"] = batch.switches[:, 1]
        return kwargs


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        return module.get_submodule(path) is not None
    except AttributeError:
        return False
