"""The model as one training step sees it: which parts train per stage, and the loss of a batch.

Trainable parameters (everything else frozen: UNet incl. its own attention weights, VAE; ArcFace
embeddings are precomputed):

- ``pretrain-lmk``: the landmark control module incl. its per-layer K/V (``landmark.*``)
- ``pretrain-emo``: the emotion control module incl. its per-layer K/V (``emotion.*``)
- ``joint``: both of the above plus the CLIP text transformer of the identity encoder
  (``identity_encoder.text_encoder.*``)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from facegen.model.attention import record_attention
from facegen.model.loading import FaceCrafterComponents
from facegen.train.losses import attention_disentanglement_loss

#: Top-level submodule names of :class:`Trainee` trained in each stage.
TRAINABLE_PARTS: dict[str, tuple[str, ...]] = {
    "pretrain-lmk": ("landmark",),
    "pretrain-emo": ("emotion",),
    "joint": ("landmark", "emotion", "identity_encoder"),
}


@dataclass
class StepInputs:
    """One micro-batch on the device. Samples with the same `groups` value are replicas of one item
    and share latents, noise and timestep."""

    images: torch.Tensor  # (B, 3, R, R) in [-1, 1]
    id_embeds: torch.Tensor  # (B, 512)
    landmark_images: torch.Tensor  # (B, 3, S, S) in [0, 1]
    emotions: torch.Tensor  # (B, 10)
    face_masks: torch.Tensor  # (B, R, R) {0, 1}
    switches: torch.Tensor  # (B, 2): a_LMK, a_EMO
    groups: torch.Tensor  # (B,) item index


class Trainee(nn.Module):
    """Holds the model parts as submodules (so DDP sees them) and computes eqs. 4-5 for a batch."""

    def __init__(self, components: FaceCrafterComponents, stage: str, lambda_ad: float = 5e-4) -> None:
        super().__init__()
        # Control modules first: their parameters are reached through the UNet's processors too.
        self.landmark = components.landmark
        self.emotion = components.emotion
        self.identity_encoder = components.identity_encoder
        self.unet = components.unet
        self.vae = components.vae
        self.stage = stage
        self.lambda_ad = lambda_ad
        self.noise_scheduler = DDPMScheduler.from_config(components.scheduler_config)
        self.latent_scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.set_trainable()

    def set_trainable(self) -> None:
        """Freeze everything, then unfreeze exactly the stage's parts (and put them in train mode)."""
        self.requires_grad_(False)
        self.eval()
        for name in TRAINABLE_PARTS[self.stage]:
            part = getattr(self, name)
            part.requires_grad_(True)
            part.train()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Exactly the trainable parameters (what checkpoints store)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def forward(self, batch: StepInputs, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch; noise/timesteps drawn from `generator` (CPU) per item."""
        device = batch.images.device
        groups = batch.groups
        first = torch.ones_like(groups, dtype=torch.bool)
        first[1:] = groups[1:] != groups[:-1]  # replicas are contiguous (repeat_interleave)
        items = batch.images[first]
        with torch.no_grad():
            dist = self.vae.encode(items.to(self.vae.dtype)).latent_dist
            eps = torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
            latents = (dist.mean + dist.std * eps) * self.latent_scale
        num_t = self.noise_scheduler.config.num_train_timesteps
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        timesteps = torch.randint(0, num_t, (latents.shape[0],), generator=generator).to(device)
        counts = torch.unique_consecutive(groups, return_counts=True)[1]
        latents, noise, timesteps = (x.repeat_interleave(counts, dim=0) for x in (latents, noise, timesteps))
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise

        train_id = "identity_encoder" in TRAINABLE_PARTS[self.stage]
        with torch.set_grad_enabled(train_id and torch.is_grad_enabled()):
            context = self.identity_encoder(batch.id_embeds)
        kwargs: dict[str, torch.Tensor] = {}
        if self.stage in ("pretrain-lmk", "joint"):
            kwargs["lmk_tokens"] = self.landmark(batch.landmark_images)
            kwargs["lmk_scale"] = batch.switches[:, 0]
        if self.stage in ("pretrain-emo", "joint"):
            kwargs["emo_tokens"] = self.emotion(batch.emotions)
            kwargs["emo_scale"] = batch.switches[:, 1]

        use_ad = self.stage == "joint" and self.lambda_ad > 0
        if use_ad:
            with record_attention(self.unet) as recorded:
                pred = self.unet(noisy, timesteps, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
                features = dict(recorded)
            ad = attention_disentanglement_loss(features, batch.switches, groups, batch.face_masks)
        else:
            pred = self.unet(noisy, timesteps, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
            ad = pred.new_zeros((), dtype=torch.float32)
        diffusion = F.mse_loss(pred.float(), target.float())
        loss = diffusion + self.lambda_ad * ad
        return {"loss": loss, "diffusion_loss": diffusion.detach(), "ad_loss": ad.detach()}
