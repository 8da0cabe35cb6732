"""Model folders from configs: the built-in tiny preset, SD1.5-size configs, and Arc2Face assembly.

`init_tiny_model` writes a complete folder in the real layout (tiny UNet/VAE/CLIP from configs, a
locally written CLIP tokenizer, random control modules; saved by `FaceCrafterPipeline.save_pretrained`)
so tests and demos go through the real loading code without any hub. `assemble_arc2face_model` builds a real folder from Arc2Face's published
layout plus an SD1.5 folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.attention import CrossAttentionLayer, cross_attention_layers
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.vae import build_autoencoder, vae_scale_factor
from facegen.model.folder import quiet_transformers, staged_dir
from facegen.model.identity import ID_PROMPT
from facegen.model.pipeline import FaceCrafterPipeline
from facegen.model.schedulers import DEFAULT_SCHEDULER, scheduler_from_name

#: The scheduler config Stable Diffusion 1.5 ships (what Arc2Face was trained with).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

#: Stable Diffusion 1.5 / Arc2Face UNet config (used for parameter budgets and benchmarks).
SD15_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "cross_attention_dim": 512,
    "attention_head_dim": 4,
    "in_channels": 4,
    "out_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 8,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 32, 64, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

#: The tiny CLIP text encoder must be at least 512 wide: the ArcFace embedding is zero-padded into it.
TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}

TINY_RESOLUTION = 64
TINY_LANDMARK_SIZE = 64
TINY_LANDMARK_CONFIG: dict[str, Any] = {"channels": [16, 32, 32], "token_grid": 4, "token_dim": 32}
TINY_EMOTION_CONFIG: dict[str, Any] = {"hidden_dim": 32, "num_tokens": 2, "token_dim": 16}

#: Full-size control modules (Table-1 budget at SD1.5 size: LMK + K/V <= 11.7M, LMK + EMO <= 18M).
LANDMARK_CONFIG: dict[str, Any] = {"channels": [32, 64, 128, 256, 256], "token_grid": 8, "token_dim": 320}
EMOTION_CONFIG: dict[str, Any] = {"hidden_dim": 256, "num_tokens": 4, "token_dim": 192}
REAL_RESOLUTION = 512
REAL_LANDMARK_SIZE = 256


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_control_modules(
    layers: list[CrossAttentionLayer],
    landmark_size: int,
    landmark_config: dict[str, Any] | None = None,
    emotion_config: dict[str, Any] | None = None,
    zero_init_values: bool = False,
) -> tuple[LandmarkControlModule, EmotionControlModule]:
    """Fresh control modules with one K/V pair per cross-attention layer of the given UNet."""
    names = [layer.name for layer in layers]
    dims = [layer.attn_dim for layer in layers]
    landmark = LandmarkControlModule(
        image_size=landmark_size,
        layer_names=names,
        layer_dims=dims,
        **{"zero_init_values": zero_init_values, **(landmark_config or LANDMARK_CONFIG)},
    )
    emotion = EmotionControlModule(
        layer_names=names, layer_dims=dims, **{"zero_init_values": zero_init_values, **(emotion_config or EMOTION_CONFIG)}
    )
    return landmark, emotion


def write_tiny_tokenizer(out_dir: Path, words: tuple[str, ...] = ("photo", "of", "a", "id", "person")) -> None:
    """A CLIP BPE tokenizer (vocab.json + merges.txt) that knows the letters and the prompt words."""
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    letters = "abcdefghijklmnopqrstuvwxyz"
    for letter in letters:
        add(letter)
    for letter in letters:
        add(letter + "</w>")
    merges = []
    for word in words:
        merged = word[0]
        for i, char in enumerate(word[1:], start=1):
            right = char + "</w>" if i == len(word) - 1 else char
            merges.append(f"{merged} {right}")
            merged += right
            add(merged)
    add("<|startoftext|>")
    add("<|endoftext|>")
    out_dir.mkdir(parents=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    # round-trip once so the folder also carries the tokenizer config (max length 77) SD1.5 ships
    CLIPTokenizer.from_pretrained(out_dir, model_max_length=77).save_pretrained(out_dir)


def init_model_from_configs(
    out_dir: str | Path,
    *,
    name: str,
    unet_config: dict[str, Any],
    vae_config: dict[str, Any],
    text_config: dict[str, Any],
    landmark_config: dict[str, Any],
    emotion_config: dict[str, Any],
    resolution: int,
    landmark_size: int,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
    scheduler_config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete random-weight model folder (current layout) from part configs; deterministic in `seed`."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        write_tiny_tokenizer(tmp / ".tokenizer")
        tokenizer = CLIPTokenizer.from_pretrained(tmp / ".tokenizer")
        shutil.rmtree(tmp / ".tokenizer")
        vocab = tokenizer.get_vocab()
        clip_config = CLIPTextConfig(
            vocab_size=len(vocab),
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            **text_config,
        )
        with seeded(seed):
            unet = UNet2DConditionModel(**unet_config)
        with seeded(seed + 1):
            vae = build_autoencoder(vae_config)
        with seeded(seed + 2):
            text_encoder = CLIPTextModel(clip_config)
        with seeded(seed + 3):
            landmark, emotion = build_control_modules(
                cross_attention_layers(unet), landmark_size, landmark_config, emotion_config
            )
        pipe = FaceCrafterPipeline(
            unet=unet,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=sd15_sampler(scheduler_config or SD15_SCHEDULER_CONFIG),
            landmark=landmark,
            emotion=emotion,
            resolution=resolution,
            landmark_image_size=landmark_size,
            num_inference_steps=25,
            model_name=name,
            provenance={"seed": seed, **(provenance or {})},
        )
        pipe.save_pretrained(tmp)
    return out_dir


def init_tiny_model(out_dir: str | Path, seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write a complete tiny FaceCrafter model folder (real layout, random weights, deterministic)."""
    return init_model_from_configs(
        out_dir,
        name="tiny",
        unet_config=TINY_UNET_CONFIG,
        vae_config=TINY_VAE_CONFIG,
        text_config=TINY_TEXT_CONFIG,
        landmark_config=TINY_LANDMARK_CONFIG,
        emotion_config=TINY_EMOTION_CONFIG,
        resolution=TINY_RESOLUTION,
        landmark_size=TINY_LANDMARK_SIZE,
        seed=seed,
        provenance={"preset": "tiny", "note": "random weights; for tests and demos only"},
        overwrite=overwrite,
    )


def shipped_preset_dir(name: str) -> Path:
    """Where a preset shipped inside the package lives (`facegen/presets/<name>/`)."""
    from importlib import resources

    return Path(str(resources.files("facegen").joinpath("presets", name)))


def sd15_sampler(scheduler_config: dict[str, Any]) -> Any:
    """The default sampler (dpmpp) built from a trained scheduler config such as SD1.5's."""
    return scheduler_from_name(DEFAULT_SCHEDULER, {k: v for k, v in scheduler_config.items() if k != "_class_name"})


# --- Arc2Face published layout -> facegen model folder ----------------------------------------

ARC2FACE_REQUIRED = ("arc2face/config.json", "arc2face/diffusion_pytorch_model.safetensors", "encoder/config.json")
ENCODER_WEIGHTS = ("encoder/model.safetensors", "encoder/pytorch_model.bin")
SD15_REQUIRED = ("vae/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json")
VAE_WEIGHTS = ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin")


def _missing_files(arc2face_dir: Path, sd15_dir: Path) -> list[str]:
    missing = [str(arc2face_dir / rel) for rel in ARC2FACE_REQUIRED if not (arc2face_dir / rel).is_file()]
    if not any((arc2face_dir / rel).is_file() for rel in ENCODER_WEIGHTS):
        missing.append(f"{arc2face_dir / ENCODER_WEIGHTS[1]} (or {ENCODER_WEIGHTS[0]})")
    missing += [str(sd15_dir / rel) for rel in SD15_REQUIRED if not (sd15_dir / rel).is_file()]
    if not any((sd15_dir / rel).is_file() for rel in VAE_WEIGHTS):
        missing.append(f"{sd15_dir / VAE_WEIGHTS[0]} (or .bin)")
    return missing


def load_torch_bin(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict loaded safely (tensors only, never arbitrary objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad user file
        raise FacegenError(f"cannot load weights safely ({type(exc).__name__}: {exc})", where=str(path)) from None
    if not isinstance(state, dict):
        raise FacegenError("expected a state dict", where=str(path))
    return state


def load_arc2face_encoder(encoder_dir: Path) -> CLIPTextModel:
    """Arc2Face's CLIPTextModel from its folder (config + model.safetensors or pytorch_model.bin)."""
    if (encoder_dir / "model.safetensors").is_file():
        with quiet_transformers():
            return CLIPTextModel.from_pretrained(encoder_dir, use_safetensors=True)
    config = CLIPTextConfig.from_pretrained(encoder_dir)
    model = CLIPTextModel(config)
    state = load_torch_bin(encoder_dir / "pytorch_model.bin")
    # Published checkpoints prefix keys with "text_model." (transformers 4.x nesting) and may carry the
    # non-persistent position_ids buffer; the 5.x CLIPTextModel is flat.
    state = {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise FacegenError(
            f"weights do not match the config: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}",
            where=str(encoder_dir / "pytorch_model.bin"),
        )
    return model


def _load_vae(sd15_dir: Path) -> AutoencoderKL:
    """SD1.5's VAE from safetensors, or from a .bin read with `weights_only=True` (never arbitrary pickles)."""
    if (sd15_dir / VAE_WEIGHTS[0]).is_file():
        return AutoencoderKL.from_pretrained(sd15_dir / "vae", use_safetensors=True)
    config = json.loads((sd15_dir / "vae" / "config.json").read_text())
    vae = AutoencoderKL.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    result = vae.load_state_dict(load_torch_bin(sd15_dir / VAE_WEIGHTS[1]), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise FacegenError(f"weights do not match vae/config.json (e.g. {(result.missing_keys + result.unexpected_keys)[0]})",
                           where=str(sd15_dir / VAE_WEIGHTS[1]))
    return vae


def assemble_arc2face_model(
    arc2face_dir: str | Path, sd15_dir: str | Path, out_dir: str | Path, seed: int = 0, *, overwrite: bool = False
) -> Path:
    """Real model folder: Arc2Face UNet + encoder, SD1.5 VAE/tokenizer/scheduler, fresh control modules.

    The control modules' value projections start at zero, so the fresh model generates exactly what
    Arc2Face does until the modules are trained. SD1.5's (trained) scheduler config becomes the default
    sampler (dpmpp) through the one scheduler-name table.
    """
    arc2face_dir, sd15_dir, out_dir = Path(arc2face_dir), Path(sd15_dir), Path(out_dir)
    missing = _missing_files(arc2face_dir, sd15_dir)
    if missing:
        raise FacegenError("missing file(s): " + "; ".join(missing), where="model init")
    unet_config = json.loads((arc2face_dir / "arc2face" / "config.json").read_text())
    encoder = load_arc2face_encoder(arc2face_dir / "encoder")
    if int(unet_config.get("cross_attention_dim", -1)) != encoder.config.hidden_size:
        raise FacegenError(
            f"UNet cross_attention_dim {unet_config.get('cross_attention_dim')} != encoder width "
            f"{encoder.config.hidden_size}",
            where=str(arc2face_dir / "arc2face" / "config.json"),
        )
    staged = staged_dir(out_dir, overwrite=overwrite)  # refuse a non-empty --out before loading anything big
    try:
        unet = UNet2DConditionModel.from_pretrained(arc2face_dir / "arc2face", use_safetensors=True)
        vae = _load_vae(sd15_dir)
        tokenizer = CLIPTokenizer.from_pretrained(sd15_dir / "tokenizer")
    except (OSError, ValueError) as exc:
        raise FacegenError(f"cannot load: {str(exc).splitlines()[0]}", where="model init") from None
    scheduler_config = json.loads((sd15_dir / "scheduler" / "scheduler_config.json").read_text())
    vae_scale = vae_scale_factor(vae)
    with seeded(seed):
        landmark, emotion = build_control_modules(cross_attention_layers(unet), REAL_LANDMARK_SIZE, zero_init_values=True)
    pipe = FaceCrafterPipeline(
        unet=unet,
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        scheduler=sd15_sampler(scheduler_config),
        landmark=landmark,
        emotion=emotion,
        resolution=int(unet.config.sample_size) * vae_scale,
        landmark_image_size=REAL_LANDMARK_SIZE,
        id_prompt=ID_PROMPT,
        model_name="arc2face-facecrafter",
        provenance={"arc2face": str(arc2face_dir.resolve()), "sd15": str(sd15_dir.resolve()), "seed": seed},
    )
    with staged as tmp:
        pipe.save_pretrained(tmp)
    return out_dir


def layers_for_unet_config(unet_config: dict[str, Any]) -> list[CrossAttentionLayer]:
    """Cross-attention layers of a UNet config, built on the meta device (no memory, no weights)."""
    from accelerate import init_empty_weights

    config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    return cross_attention_layers(unet)
