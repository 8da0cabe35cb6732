"""Layout-1 model folders (`facegen.json` format 1): their parts as FaceCrafterPipeline arguments.

`FaceCrafterPipeline.from_pretrained(old_dir)` loads such a folder through here (nothing is written);
`facegen model convert OLD NEW` (:func:`facegen.model.loading.convert_model_folder`) rewrites it in
layout 2. The scheduler of layout 1 was the trained scheduler config plus a sampler name
(`default_scheduler`); it becomes that sampler, built through the one name table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import SafetensorError
from transformers import CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.folder import ModelInfo, pipeline_config, quiet_transformers
from facegen.model.schedulers import DEFAULT_SCHEDULER, scheduler_from_name


def read_scheduler_config(path: Path) -> dict[str, Any]:
    """A layout-1 `scheduler/scheduler_config.json` without its class name."""
    config_path = path / "scheduler_config.json"
    if not config_path.is_file():
        raise FacegenError("missing scheduler_config.json", where=str(path))
    config = json.loads(config_path.read_text())
    config.pop("_class_name", None)
    return config


def load_legacy_parts(model_dir: Path, info: ModelInfo, torch_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Every component and config value of a layout-1 folder, as FaceCrafterPipeline keyword arguments."""
    dtype = torch_dtype or torch.float32

    def part(name: str) -> str:
        return str(model_dir / info.parts[name])

    try:
        with quiet_transformers():
            parts: dict[str, Any] = {
                "unet": UNet2DConditionModel.from_pretrained(part("unet"), use_safetensors=True, dtype=dtype),
                "text_encoder": CLIPTextModel.from_pretrained(part("encoder"), use_safetensors=True, dtype=dtype),
                "tokenizer": CLIPTokenizer.from_pretrained(part("tokenizer")),
                "vae": AutoencoderKL.from_pretrained(part("vae"), use_safetensors=True, dtype=dtype),
                "landmark": LandmarkControlModule.from_pretrained(part("landmark"), use_safetensors=True, dtype=dtype),
                "emotion": EmotionControlModule.from_pretrained(part("emotion"), use_safetensors=True, dtype=dtype),
            }
        scheduler_config = read_scheduler_config(Path(part("scheduler")))
    except (OSError, ValueError, SafetensorError) as exc:
        raise FacegenError(f"cannot load the model: {str(exc).splitlines()[0]}", where=str(model_dir)) from None
    parts["scheduler"] = scheduler_from_name(info.default_scheduler or DEFAULT_SCHEDULER, scheduler_config)
    return {**parts, **pipeline_config(info)}
