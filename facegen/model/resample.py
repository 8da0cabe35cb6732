"""A fixed pixel-space "autoencoder": the latent is the image itself at 1/`factor` of its size.

Why (measured on synthface, `benchmarks/synthface_latent_cap.py`): a learned 4x KL autoencoder
(64x64x3 -> 16x16x4) caps what a generated image can show at what its reconstructions show, and the
synthface proxy reads only ~58% of emotions and ~64% of identities off those, while the same renders
area-downsampled to 32x32 and upsampled again still read ~82% / ~98%. A UNet on 32x32x3 pixels costs
about twice a UNet on 16x16x4 latents per step, and nothing has to be learned to get there.

Encoding is area downsampling (exact, deterministic: `latent_dist` has zero variance); decoding is
bilinear upsampling plus an optional learned residual refiner (`refiner_channels > 0`), whose last
convolution starts at zero, so an untrained refiner decodes exactly the bilinear image. Only the refiner
trains (`facegen train vae` with `train_encoder: false`), so the latent space never moves and a UNet
trained on it stays valid. The class follows diffusers' autoencoder interface (`encode(x).latent_dist`,
`decode(z).sample`, `config.scaling_factor`), so the pipeline, the training stages and
`save_pretrained` / `from_pretrained` treat it like `AutoencoderKL`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ResidualRefiner(nn.Module):
    """A few 3x3 convolutions over the upsampled image predicting a correction (last layer zero-init)."""

    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(max(layers - 2, 0)):
            blocks += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU()]
        out = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*blocks, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ResampleAutoencoder(ModelMixin, ConfigMixin):
    """Latents = the image area-downsampled by `factor` (times `scaling_factor` in the pipeline);
    decode = bilinear upsampling (+ the learned residual refiner when `refiner_channels > 0`)."""

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        factor: int = 2,
        sample_size: int = 64,
        scaling_factor: float = 1.0,
        refiner_channels: int = 0,
        refiner_layers: int = 3,
        force_upcast: bool = False,
    ) -> None:
        super().__init__()
        if factor < 1 or sample_size % factor:
            raise ValueError(f"factor must be >= 1 and divide sample_size ({sample_size}); got {factor}")
        self.decoder = ResidualRefiner(in_channels, refiner_channels, refiner_layers) if refiner_channels > 0 else None

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """(B, C, H, W) in [-1, 1] -> a zero-variance latent distribution over (B, C, H/f, W/f)."""
        f = int(self.config.factor)
        mean = F.avg_pool2d(x, f) if f > 1 else x
        dist = DiagonalGaussianDistribution(torch.cat([mean, torch.zeros_like(mean)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        """(B, C, h, w) -> (B, C, h*f, w*f) images in [-1, 1] (not clamped, like AutoencoderKL)."""
        f = int(self.config.factor)
        x = F.interpolate(z, scale_factor=f, mode="bilinear", align_corners=False) if f > 1 else z
        if self.decoder is not None:
            x = self.decoder(x)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True, generator=None):
        z = self.encode(sample).latent_dist.mode()
        return self.decode(z, return_dict=return_dict)


__all__ = ["ResampleAutoencoder", "ResidualRefiner"]
