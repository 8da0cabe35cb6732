"""Model folders for training and tools: load/save as `FaceCrafterComponents`, convert old folders.

The folder format itself (layouts 1 and 2, `ModelInfo`, `model_hash`) lives in `facegen.model.folder`;
loading goes through `FaceCrafterPipeline.from_pretrained`, saving through its `save_pretrained`, so
there is one reader and one writer. `FaceCrafterComponents` is the training view: the parts as
attributes (control modules installed into the UNet's attention) plus the folder description.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.controls import EmotionControlModule, LandmarkControlModule
from facegen.model.folder import (  # noqa: F401 - re-exported for callers of the old module
    FORMAT_NAME,
    FORMAT_VERSION,
    INFO_FILE,
    PARTS,
    GuidanceDefaults,
    ModelInfo,
    folder_layout,
    info_from_pipeline_config,
    model_hash,
    pipeline_config,
    quiet_transformers,
    read_model_info,
    staged_dir,
)
from facegen.model.identity import IdentityEncoder
from facegen.model.pipeline import FaceCrafterPipeline
from facegen.model.vae import Autoencoder


@dataclass
class FaceCrafterComponents:
    """All loaded parts of a model folder (control modules installed into the UNet's attention)."""

    info: ModelInfo
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    vae: Autoencoder
    scheduler: SchedulerMixin
    landmark: LandmarkControlModule
    emotion: EmotionControlModule
    identity_encoder: IdentityEncoder

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.scheduler.config)

    @classmethod
    def from_pipeline(cls, pipe: FaceCrafterPipeline) -> FaceCrafterComponents:
        info = info_from_pipeline_config(dict(pipe.config))
        return cls(
            info, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, pipe.scheduler, pipe.landmark, pipe.emotion,
            pipe.identity_encoder,
        )

    def to_pipeline(self) -> FaceCrafterPipeline:
        """A pipeline over these same modules (re-installs the FaceCrafter processors into the UNet)."""
        pipe = FaceCrafterPipeline(
            unet=self.unet, vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
            scheduler=self.scheduler, landmark=self.landmark, emotion=self.emotion, **pipeline_config(self.info),
        )
        pipe.identity_encoder = self.identity_encoder  # keep the very module training holds
        return pipe

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FaceCrafterComponents:
        # (only pass what is given: diffusers warns whenever a dtype keyword is present)
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.unet, self.text_encoder, self.vae, self.landmark, self.emotion, self.identity_encoder):
            module.to(**kwargs)
        return self


def load_components(
    model_dir: str | Path, device: str | torch.device = "cpu", torch_dtype: torch.dtype = torch.float32
) -> FaceCrafterComponents:
    """Load every part of a model folder (either layout), frozen and in eval mode."""
    pipe = FaceCrafterPipeline.from_pretrained(model_dir, torch_dtype=torch_dtype)
    components = FaceCrafterComponents.from_pipeline(pipe)
    for module in (components.unet, components.text_encoder, components.vae, components.landmark, components.emotion):
        module.eval()
        module.requires_grad_(False)
    return components.to(device)


def save_components(components: FaceCrafterComponents, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a complete (layout-2) model folder atomically (temp folder, then rename)."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        components.to_pipeline().save_pretrained(tmp)
    return out_dir


def convert_model_folder(old_dir: str | Path, new_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Rewrite a layout-1 model folder (`facegen.json` format 1) as a layout-2 (diffusers) folder.

    Weights are copied unchanged; the sampler named by `default_scheduler` becomes the saved scheduler,
    so the converted folder generates the same pixels as the old one.
    """
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    if not old_dir.is_dir():
        raise FacegenError("model folder does not exist", where=str(old_dir))
    if folder_layout(old_dir) != 1:
        raise FacegenError("already in the current layout (model_index.json); nothing to convert", where=str(old_dir))
    if new_dir.resolve() == old_dir.resolve():
        raise FacegenError("write the converted folder somewhere else than the old one", where=str(new_dir))
    pipe = FaceCrafterPipeline.from_pretrained(old_dir)
    with staged_dir(new_dir, overwrite=overwrite) as tmp:
        pipe.save_pretrained(tmp)
    return new_dir
