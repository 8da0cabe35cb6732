"""Pipelines for the benchmarks (a helper module, not a benchmark; imported by guidance_intervals.py and
gpu_throughput.py): the tiny preset, an in-memory SD1.5-size FaceCrafter pipeline with random weights,
or a real model folder.

    from _bench_models import build_pipeline   # with benchmarks/ on sys.path (the scripts do that)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

#: Stable Diffusion 1.5's VAE (AutoencoderKL) config.
SD15_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
#: CLIP ViT-L/14's text transformer (the Arc2Face ID encoder's shape); `layers` can shrink it for CPU runs.
SD15_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}


def build_pipeline(
    kind: str = "sd15",
    *,
    model_dir: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    text_layers: int | None = None,
    vae: str = "sd15",
    seed: int = 0,
):
    """A FaceCrafterPipeline: `kind` "tiny" (the tiny preset, written to a temp folder), "sd15" (SD1.5-size
    UNet + real-size control modules, random weights, built in memory; `vae="tiny"` swaps in the tiny VAE
    and `text_layers` shortens the CLIP text encoder, both only where they are not measured), or "folder"
    (`model_dir`)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from facegen.model.attention import cross_attention_layers
    from facegen.model.pipeline import FaceCrafterPipeline
    from facegen.model.presets import (
        REAL_LANDMARK_SIZE,
        REAL_RESOLUTION,
        SD15_SCHEDULER_CONFIG,
        SD15_UNET_CONFIG,
        TINY_VAE_CONFIG,
        build_control_modules,
        init_tiny_model,
        sd15_sampler,
        seeded,
        write_tiny_tokenizer,
    )

    if kind == "folder":
        pipe = FaceCrafterPipeline.from_pretrained(model_dir, torch_dtype=dtype)
    elif kind == "tiny":
        folder = Path(tempfile.mkdtemp(prefix="facegen-bench-")) / "tiny"
        init_tiny_model(folder, seed=seed)
        pipe = FaceCrafterPipeline.from_pretrained(folder, torch_dtype=dtype)
    elif kind == "sd15":
        from diffusers import AutoencoderKL, UNet2DConditionModel

        tok_dir = Path(tempfile.mkdtemp(prefix="facegen-bench-")) / "tokenizer"
        write_tiny_tokenizer(tok_dir)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        vocab = tokenizer.get_vocab()
        text = dict(SD15_TEXT_CONFIG)
        if text_layers:
            text["num_hidden_layers"] = text_layers
        clip = CLIPTextConfig(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                              eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"], **text)
        with seeded(seed):
            unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        with seeded(seed + 1):
            autoencoder = AutoencoderKL(**(SD15_VAE_CONFIG if vae == "sd15" else TINY_VAE_CONFIG))
        with seeded(seed + 2):
            text_encoder = CLIPTextModel(clip)
        with seeded(seed + 3):
            landmark, emotion = build_control_modules(cross_attention_layers(unet), REAL_LANDMARK_SIZE)
        pipe = FaceCrafterPipeline(
            unet=unet, vae=autoencoder, text_encoder=text_encoder, tokenizer=tokenizer,
            scheduler=sd15_sampler(SD15_SCHEDULER_CONFIG), landmark=landmark, emotion=emotion,
            resolution=REAL_RESOLUTION, landmark_image_size=REAL_LANDMARK_SIZE, model_name="sd15-random",
        )
        if dtype != torch.float32:  # random weights are built in float32
            pipe.to(dtype=dtype)
    else:
        raise ValueError(f"unknown pipeline kind {kind!r}")
    pipe.to(device)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.landmark, pipe.emotion):
        module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_conditions(batch: int, landmark_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """L2-normalised identities, landmark images in [0, 1] and emotion vectors (seeded, CPU)."""
    from facegen.labels import EMOTION_VECTOR_DIM, ID_EMBED_DIM

    g = torch.Generator().manual_seed(seed)
    return {
        "id_embeds": torch.nn.functional.normalize(torch.randn(batch, ID_EMBED_DIM, generator=g), dim=-1),
        "landmark_images": torch.rand(batch, 3, landmark_size, landmark_size, generator=g),
        "emotions": torch.rand(batch, EMOTION_VECTOR_DIM, generator=g),
    }
