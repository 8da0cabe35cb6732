"""Moving trained weights in and out of model folders.

- :func:`load_init_modules`: the joint stage "loads both" pre-trained modules — `init_landmark` /
  `init_emotion` name model folders (e.g. the exports of the two pre-training runs) whose
  ``landmark/`` / ``emotion/`` replace the input model's (weights only when the designs match; the
  whole module when the design differs but serves the same layers, e.g. a fresh module of a new design).
- :func:`export_model`: the input model folder with the checkpoint's trained parts written in, as a
  complete model folder (`FaceCrafterPipeline.from_pretrained` and hence `balance` load it directly),
  including the frozen unconditional context of eq. 6 (``text_encoder/uncond_context.safetensors``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from facegen.errors import FacegenError
from facegen.model.attention import install_facecrafter_attention
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.loading import FaceCrafterComponents, load_components, model_hash, read_model_info, save_components
from facegen.train.checkpoint import load_ema, load_weights, read_state
from facegen.train.config import StageConfig


def load_init_modules(components: FaceCrafterComponents, cfg: StageConfig) -> None:
    """Copy pre-trained control-module weights (cfg.init_landmark / init_emotion) into `components`."""
    for key, attr, cls in (
        ("init_landmark", "landmark", LandmarkControlModule),
        ("init_emotion", "emotion", EmotionControlModule),
    ):
        source = getattr(cfg, key)
        if source is None:
            continue
        info = read_model_info(source)
        module = cls.from_pretrained(str(Path(source) / info.parts[attr]), use_safetensors=True)
        target = getattr(components, attr)
        if _architecture(module.config) == _architecture(target.config):
            target.load_state_dict(module.state_dict())
            continue
        # A different module design (e.g. a landmark module with a spatial prior) may replace the input's
        # as long as it serves the same cross-attention layers and reads the same input.
        for field in ("layer_names", "layer_dims", "image_size", "in_dim"):
            if field in module.config and list(_as_list(module.config[field])) != list(_as_list(target.config.get(field))):
                raise FacegenError(
                    f"{key}: {attr}/config.json has {field}={module.config[field]!r}, the input model's "
                    f"{target.config.get(field)!r}; use modules made for this model's UNet and inputs"
                )
        setattr(components, attr, module.to(device=target.device, dtype=target.dtype))
        install_facecrafter_attention(components.unet, components.landmark, components.emotion)


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


def _architecture(config) -> str:
    """A module config without diffusers' bookkeeping keys, comparable across save/load."""
    return json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True, default=list)


def apply_decoder(components: FaceCrafterComponents, cfg: StageConfig) -> None:
    """The config's `decoder:` replaces the VAE's decoder with a new, wider one behind the same encoder
    (a no-op when the input model's decoder already has that shape, e.g. on resume from an export);
    `new_autoencoder:` replaces the whole VAE with a fresh one (seeded by the config's seed)."""
    from facegen.model.vae import fresh_autoencoder, with_wider_decoder

    if cfg.decoder is not None:
        components.vae = with_wider_decoder(
            components.vae, cfg.decoder.block_out_channels, cfg.decoder.layers_per_block, seed=cfg.seed
        )
    if cfg.new_autoencoder is not None:
        components.vae = fresh_autoencoder(
            components.vae, cfg.new_autoencoder.block_out_channels, cfg.new_autoencoder.layers_per_block, seed=cfg.seed
        )


def export_model(
    cfg: StageConfig, checkpoint_dir: str | Path, out_dir: str | Path, *, use_ema: bool = True
) -> Path:
    """Write the input model + the checkpoint's trained parts as a model folder at `out_dir` (atomic).

    The trained parts are the checkpoint's EMA weights when it holds them (and `use_ema`), else the
    weights of its last step; the model's training history records which."""
    from facegen.train.trainee import Trainee

    state = read_state(Path(checkpoint_dir))
    components = load_components(cfg.model, device="cpu")
    load_init_modules(components, cfg)
    apply_decoder(components, cfg)
    trainee = Trainee(
        components, cfg.stage, cfg.lambda_ad, train_encoder=cfg.train_encoder, train_identity_encoder=cfg.encoder_lr > 0
    )
    ema = load_ema(Path(checkpoint_dir)) if use_ema else None
    weights = ema if ema is not None else load_weights(Path(checkpoint_dir))
    result = trainee.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise FacegenError(f"checkpoint {checkpoint_dir} has unknown parameters (e.g. {result.unexpected_keys[0]})")
    trained = set(trainee.trainable_state_dict())
    not_restored = trained & set(result.missing_keys)
    if not_restored:
        raise FacegenError(f"checkpoint {checkpoint_dir} lacks trained parameters (e.g. {sorted(not_restored)[0]})")
    trainee.prepare_export()  # eq. 6's unconditional context: captured now (base) or kept from the input
    from facegen.model.resample import ResampleAutoencoder

    fixed_latents = isinstance(components.vae, ResampleAutoencoder)  # its scale is set once, at init
    if trainee.spec.objective == "autoencoder" and cfg.train_encoder and not fixed_latents:
        calibrate_latent_scale(components, cfg)  # a frozen encoder keeps the scale its UNet was trained with
    history = list(components.info.source.get("training", []))
    history.append(
        {
            "stage": cfg.stage,
            "steps": state.step,
            "base_model_hash": model_hash(cfg.model),
            "data": cfg.data,
            "seed": cfg.seed,
            "run": cfg.run_name,
            "weights": f"ema ({state.ema_updates} updates)" if ema is not None else "last step",
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    components.info = components.info.model_copy(
        update={"source": {**components.info.source, "training": history}}
    )
    return save_components(components, out_dir, overwrite=True)


def calibrate_latent_scale(components: FaceCrafterComponents, cfg: StageConfig, num_images: int = 256) -> float:
    """Set the VAE's `scaling_factor` to 1 / std of its latents on the training data (as SD does)."""
    import numpy as np
    import torch

    from facegen.train.data import TarImages, load_labels

    labels = load_labels(cfg.data)
    images = TarImages(cfg.data)
    keys = labels.frame["key"].tolist()[:num_images]
    pixels = np.stack([np.asarray(images.read(k), dtype=np.float32) / 127.5 - 1.0 for k in keys])
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        std = float(components.vae.encode(x).latent_dist.mean.std())
    scale = 1.0 / max(std, 1e-6)
    components.vae.register_to_config(scaling_factor=scale)
    return scale
