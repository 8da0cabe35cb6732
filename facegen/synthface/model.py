"""The synthface model architecture (untrained): a small latent Arc2Face + FaceCrafter at 64 px.

Why this shape (measured on this 2-core CPU, forward+backward, batch 32, one thread, a busy machine):
a pixel-space UNet at 64 px with attention at 32x32 costs ~6 s per step; behind a 4x autoencoder
(64x64x3 -> 16x16x4) a UNet with cross-attention at 16x16 and 8x8 costs 1.9 s at channels 64/128/128
(6.5M) and 1.2 s at 32/64/128 (3.5M, chosen), and the autoencoder trains at ~0.6 s per batch of 16.
Cross-attention stays at 16x16 because the landmark tokens enter only through cross-attention and
must place features precisely. The CLIP ID encoder is 512 wide (the ArcFace-style embedding is
zero-padded into it) with 2 layers and an 8-token context: at SD's 77 tokens the frozen encoder's
forward alone cost more than the UNet step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facegen.errors import FacegenError
from facegen.model.presets import init_model_from_configs

SYNTHFACE_RESOLUTION = 64
SYNTHFACE_LANDMARK_SIZE = 64

PIXEL_SCALING_FACTOR = 3.0  # 1 / 0.338

SYNTHFACE_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64, 128],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 512,
    "attention_head_dim": 32,
    "norm_num_groups": 32,
}
SYNTHFACE_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 32, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": 64,
    "scaling_factor": 1.0,  # set from the trained encoder's latent std by `facegen train vae`
}
# The pixel-space variant (`init-model --autoencoder resample2`): a fixed 2x resampling "autoencoder"
# (facegen.model.resample: the latent is the image at 32x32x3, nothing learned) and a UNet over it with
# cross-attention at 16x16 and 8x8, as above. Why: the learned 4x autoencoder caps emotion / identity at
# ~58% / ~64% as read by the proxy estimator, 32-px pixels at ~82% / ~98%
# (benchmarks/synthface_latent_cap.py); the UNet step costs ~2x.
SYNTHFACE_PIXEL_UNET_CONFIG: dict[str, Any] = {
    **SYNTHFACE_UNET_CONFIG,
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
}
# scaling_factor: 1 / std of synthface pixels in [-1, 1] at 32 px (0.338 on 2,000 held-out renders),
# so the noise schedule sees unit-variance inputs as it does on the KL latents.
SYNTHFACE_PIXEL_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "factor": 2, "sample_size": 64, "scaling_factor": PIXEL_SCALING_FACTOR,
    "refiner_channels": 32, "refiner_layers": 3,
}
AUTOENCODERS = ("kl4", "resample2")

SYNTHFACE_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "max_position_embeddings": 8,  # "<bos> photo of a id person <eos>" fits; 77 would cost 10x
    "hidden_act": "quick_gelu",
}
# The landmark branch gets the spatial prior (controls.py): without it the frozen 16x16 UNet's queries,
# nearly position-free at high noise, left the branch inert after 800 steps (benchmarks/
# control_information.py: loss on / off / shuffled equal within 0.1%); with it, a shuffled landmark image
# costs 27% more loss at t = 800 after 50 steps. Values start at zero so a fresh branch adds nothing.
SYNTHFACE_LANDMARK_CONFIG: dict[str, Any] = {
    "channels": [32, 64, 128], "token_grid": 8, "token_dim": 128, "spatial_prior_width": 1.0, "zero_init_values": True,
}
SYNTHFACE_EMOTION_CONFIG: dict[str, Any] = {"hidden_dim": 128, "num_tokens": 4, "token_dim": 128, "zero_init_values": True}


def init_synthface_model(
    out_dir: str | Path, seed: int = 0, *, overwrite: bool = False, autoencoder: str = "kl4"
) -> Path:
    """An untrained synthface model folder (the starting point of `make synthface-model`).

    `autoencoder`: "kl4" (a learned 4x KL autoencoder, trained by the `vae` stage) or "resample2"
    (the fixed 2x pixel-space one; its optional refiner trains in a `vae` stage with `train_encoder: false`).
    """
    if autoencoder not in AUTOENCODERS:
        raise FacegenError(f"must be one of {', '.join(AUTOENCODERS)}; got {autoencoder!r}", where="--autoencoder")
    pixel = autoencoder == "resample2"
    return init_model_from_configs(
        out_dir,
        name="synthface",
        unet_config=SYNTHFACE_PIXEL_UNET_CONFIG if pixel else SYNTHFACE_UNET_CONFIG,
        vae_config=SYNTHFACE_PIXEL_VAE_CONFIG if pixel else SYNTHFACE_VAE_CONFIG,
        text_config=SYNTHFACE_TEXT_CONFIG,
        landmark_config=SYNTHFACE_LANDMARK_CONFIG,
        emotion_config=SYNTHFACE_EMOTION_CONFIG,
        resolution=SYNTHFACE_RESOLUTION,
        landmark_size=SYNTHFACE_LANDMARK_SIZE,
        seed=seed,
        provenance={"preset": "synthface", "autoencoder": autoencoder, "note": "untrained; build with `make synthface-model`"},
        overwrite=overwrite,
    )
