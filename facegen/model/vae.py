"""The autoencoder behind the latent space: the two diffusers classes a model folder may hold, and
swapping in a wider decoder behind an unchanged encoder.

A model's latent space is its *encoder*: the UNet and the control modules were trained on what it
produces. The decoder only turns latents into pixels, so it can be retrained or replaced (Stable
Diffusion's ft-MSE VAE fine-tuned only the decoder) without retraining anything else. A wider decoder
than the encoder is what diffusers' `AsymmetricAutoencoderKL` is for; with no image/mask passed its
decoder is a plain decoder.
"""

from __future__ import annotations

from typing import Union

from diffusers import AsymmetricAutoencoderKL, AutoencoderKL

from facegen.errors import FacegenError
from facegen.model.resample import ResampleAutoencoder

Autoencoder = Union[AutoencoderKL, AsymmetricAutoencoderKL, ResampleAutoencoder]
#: Sub-modules that define the latent space (frozen when only the decoder trains).
ENCODER_PARTS = ("encoder", "quant_conv")


def encoder_channels(vae: Autoencoder) -> list[int]:
    cfg = vae.config
    return list(cfg.down_block_out_channels if "down_block_out_channels" in cfg else cfg.block_out_channels)


def decoder_channels(vae: Autoencoder) -> list[int]:
    cfg = vae.config
    return list(cfg.up_block_out_channels if "up_block_out_channels" in cfg else cfg.block_out_channels)


def vae_scale_factor(vae: Autoencoder) -> int:
    """Pixels per latent cell along one side (8 for SD1.5's VAE)."""
    if isinstance(vae, ResampleAutoencoder):
        return int(vae.config.factor)
    return 2 ** (len(encoder_channels(vae)) - 1)


def build_autoencoder(config: dict) -> Autoencoder:
    """An untrained autoencoder from a config dict: `ResampleAutoencoder` when it names a `factor`,
    else `AutoencoderKL`."""
    if "factor" in config:
        return ResampleAutoencoder(**config)
    return AutoencoderKL(**config)


def _require_kl(vae: Autoencoder, field: str) -> None:
    if isinstance(vae, ResampleAutoencoder):
        raise FacegenError(
            "this model's autoencoder is a fixed ResampleAutoencoder (pixel latents); only its refiner trains "
            "(train_encoder: false), it has no KL decoder to replace", where=field,
        )


def _decoder_layers(vae: Autoencoder) -> int:
    cfg = vae.config
    return int(cfg.layers_per_up_block if "layers_per_up_block" in cfg else cfg.layers_per_block)


def has_decoder(vae: Autoencoder, channels: list[int], layers_per_block: int) -> bool:
    return decoder_channels(vae) == list(channels) and _decoder_layers(vae) == layers_per_block


def check_widths(vae_config, channels: list[int], field: str) -> None:
    """One-line error (naming `field`) unless `channels` can replace the widths of an autoencoder with
    this config: one width per encoder level (the latent size depends on it), each a multiple of the
    GroupNorm group count."""
    cfg = vae_config
    levels = list(cfg["down_block_out_channels"] if "down_block_out_channels" in cfg else cfg["block_out_channels"])
    if len(channels) != len(levels):
        raise FacegenError(
            f"needs {len(levels)} widths, one per encoder level (a different count changes the latent size); got {len(channels)}",
            where=field,
        )
    groups = int(cfg["norm_num_groups"])
    if any(c % groups for c in channels):
        raise FacegenError(f"every width must be a multiple of the VAE's norm_num_groups ({groups})", where=field)


def with_wider_decoder(vae: Autoencoder, channels: list[int], layers_per_block: int, *, seed: int = 0) -> Autoencoder:
    """`vae` itself if its decoder already has this shape, else an `AsymmetricAutoencoderKL` with `vae`'s
    encoder weights (same latents, same `scaling_factor`) and a freshly initialised decoder of the given
    widths (one per level, highest resolution first)."""
    import torch

    _require_kl(vae, "decoder")
    if has_decoder(vae, channels, layers_per_block):
        return vae
    check_widths(vae.config, channels, "decoder.block_out_channels")
    if getattr(vae, "quant_conv", None) is None:
        raise FacegenError("this VAE has no quant_conv; a wider decoder needs the standard KL layout", where="decoder")
    levels = encoder_channels(vae)
    cfg = vae.config
    groups = int(cfg.norm_num_groups)
    encoder_layers = cfg.layers_per_down_block if "layers_per_down_block" in cfg else cfg.layers_per_block
    encoder_kw = dict(down_block_types=tuple(cfg.down_block_types), down_block_out_channels=tuple(levels),
                      layers_per_down_block=int(encoder_layers))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the fresh decoder's initialisation is part of the recipe
        wide = AsymmetricAutoencoderKL(
            in_channels=int(cfg.in_channels), out_channels=int(cfg.out_channels),
            up_block_types=("UpDecoderBlock2D",) * len(channels), up_block_out_channels=tuple(channels),
            layers_per_up_block=int(layers_per_block), act_fn=cfg.act_fn, latent_channels=int(cfg.latent_channels),
            norm_num_groups=groups, sample_size=int(cfg.sample_size), scaling_factor=float(cfg.scaling_factor),
            **encoder_kw,
        )
    for part in ENCODER_PARTS:
        getattr(wide, part).load_state_dict(getattr(vae, part).state_dict())
    return wide if vae.dtype == torch.float32 else wide.to(dtype=vae.dtype)


def fresh_autoencoder(like: Autoencoder, channels: list[int], layers_per_block: int, *, seed: int = 0) -> AutoencoderKL:
    """A new, randomly initialised `AutoencoderKL` (seeded) with `like`'s image and latent shapes (so a
    UNet built for `like` still fits) and the given widths, one per level. A new latent space: every
    diffusion model on top must be retrained."""
    import torch

    _require_kl(like, "new_autoencoder")
    check_widths(like.config, channels, "new_autoencoder.block_out_channels")
    cfg = like.config
    groups = int(cfg.norm_num_groups)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=int(cfg.in_channels), out_channels=int(cfg.out_channels),
            down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels),
            block_out_channels=tuple(channels), layers_per_block=int(layers_per_block), act_fn=cfg.act_fn,
            latent_channels=int(cfg.latent_channels), norm_num_groups=groups, sample_size=int(cfg.sample_size),
            scaling_factor=float(cfg.scaling_factor),
        )


__all__ = [
    "Autoencoder",
    "build_autoencoder",
    "ResampleAutoencoder",
    "check_widths",
    "ENCODER_PARTS",
    "decoder_channels",
    "encoder_channels",
    "fresh_autoencoder",
    "has_decoder",
    "vae_scale_factor",
    "with_wider_decoder",
]
