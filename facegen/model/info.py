"""Parameter counts of a model folder (read from safetensors headers, no weights loaded) and the
SD1.5-size budget check of the control modules (built on the meta device)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from facegen.model.folder import ModelInfo, read_model_info

#: Table-1 budget of the paper at SD1.5 size.
LMK_BUDGET = 11_700_000
LMK_EMO_BUDGET = 18_000_000


@dataclass(frozen=True)
class PartCount:
    part: str
    total: int
    kv: int = 0  # per-layer cross-attention K/V inside a control module

    @property
    def encoder(self) -> int:
        return self.total - self.kv


def _count_file(path: Path) -> tuple[int, int]:
    total = kv = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            shape = handle.get_slice(key).get_shape()
            n = 1
            for dim in shape:
                n *= int(dim)
            total += n
            if key.startswith("kv."):
                kv += n
    return total, kv


def count_model_parameters(model_dir: str | Path) -> tuple[ModelInfo, list[PartCount]]:
    """Per-part parameter counts of a model folder from its safetensors files."""
    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    counts = []
    for part in ("unet", "encoder", "vae", "landmark", "emotion"):
        total = kv = 0
        for path in sorted((model_dir / info.parts[part]).glob("*.safetensors")):
            t, k = _count_file(path)
            total, kv = total + t, kv + k
        counts.append(PartCount(part, total, kv))
    return info, counts


@dataclass(frozen=True)
class BudgetReport:
    landmark_encoder: int
    landmark_kv: int
    emotion_encoder: int
    emotion_kv: int
    cross_attention_layers: int
    cross_attention_width_sum: int

    @property
    def landmark_total(self) -> int:
        return self.landmark_encoder + self.landmark_kv

    @property
    def emotion_total(self) -> int:
        return self.emotion_encoder + self.emotion_kv

    @property
    def total(self) -> int:
        return self.landmark_total + self.emotion_total

    @property
    def within_budget(self) -> bool:
        return self.landmark_total <= LMK_BUDGET and self.total <= LMK_EMO_BUDGET


def sd15_budget() -> BudgetReport:
    """Build the SD1.5-size UNet and the default control modules on the meta device and count."""
    import torch
    from diffusers import UNet2DConditionModel

    from facegen.model.attention import cross_attention_layers
    from facegen.model.presets import REAL_LANDMARK_SIZE, SD15_UNET_CONFIG, build_control_modules

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        layers = cross_attention_layers(unet)
        landmark, emotion = build_control_modules(layers, REAL_LANDMARK_SIZE)
    return BudgetReport(
        landmark_encoder=landmark.encoder_parameters(),
        landmark_kv=landmark.kv_parameters(),
        emotion_encoder=emotion.encoder_parameters(),
        emotion_kv=emotion.kv_parameters(),
        cross_attention_layers=len(layers),
        cross_attention_width_sum=sum(layer.attn_dim for layer in layers),
    )
